-- The kernel's declined path as separate statements, one round trip each (what a
-- straightforward client does), prepared (-M prepared): the key is looked up, the claim
-- finds no bucket (the item is out of stock), the declined intent is written. Ids and the
-- key are drawn before the transaction.
-- A mandate near a random point of its primary key (an index probe, not a scan).
SELECT mandate_id AS mid, merchant_id AS mer, gen_random_uuid() AS iid, 'pgb-' || gen_random_uuid() AS k
  FROM ((SELECT mandate_id, merchant_id FROM mandate WHERE mandate_id >= gen_random_uuid() AND sandbox = 0
          ORDER BY mandate_id LIMIT 1)
        UNION ALL
        (SELECT mandate_id, merchant_id FROM mandate WHERE sandbox = 0 ORDER BY mandate_id LIMIT 1)) m
 LIMIT 1 \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT fingerprint, snapshot FROM intent WHERE idem_key = :k::text;
UPDATE bucket SET available = available - 1
 WHERE bucket_id = (SELECT bucket_id FROM bucket WHERE item_id = :item::uuid AND available >= 1 ORDER BY random() LIMIT 1)
   AND available >= 1;
INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id, quantity,
    amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot, created_at_ms)
  VALUES (:iid::uuid, :k::text, md5(:k::text), :mer::uuid, :mid::uuid, :item::uuid, 'pgbench', 1, 2500, 'USD', 'DECLINED', 'OUT_OF_STOCK', NULL, 1,
    json_build_object('outcome', 'DECLINED', 'intentId', :iid::text, 'failureCode', 'OUT_OF_STOCK',
      'amountMinor', 2500, 'currency', 'USD', 'attempts', 1, 'replayed', false)::text, 0);
COMMIT;
