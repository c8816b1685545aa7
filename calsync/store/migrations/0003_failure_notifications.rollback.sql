DROP TABLE global_pause, failure_episodes;
