-- Webhook delivery throughput: the unsettled deliveries of each queue, in `seq` order, in an
-- index of their own. A queue's head (the delivery that may go next) is the first entry of its
-- queue here, so the dispatcher finds every head by skipping from queue to queue (one index
-- probe per queue) and checks "nothing earlier is unsettled" for one row with one probe,
-- instead of testing every pending row against every earlier one. Settled rows (the history)
-- are not in it, so it stays as small as the backlog.
CREATE INDEX webhook_deliveries_unsettled ON webhook_deliveries (queue, seq)
    WHERE status IN ('pending', 'delivering');

-- The claim no longer filters every row by status and due time or probes (queue, status, seq):
-- both indexes only cost writes now.
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_queue;
