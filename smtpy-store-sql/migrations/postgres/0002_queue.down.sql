-- Reverts 0002_queue: drops the mail queue — with the messages in it.
DROP TABLE IF EXISTS queue_bodies;
DROP TABLE IF EXISTS queue;
