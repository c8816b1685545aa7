DROP TABLE push_latencies;
