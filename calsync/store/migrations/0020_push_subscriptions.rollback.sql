DROP TABLE push_status, push_subscriptions;
