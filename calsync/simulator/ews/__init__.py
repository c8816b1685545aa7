"""The EWS endpoint: SOAP parsing and rendering, and one module per operation."""
