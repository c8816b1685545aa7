DROP TABLE refused_items;
