-- The kernel's commit path as separate statements, one round trip each (what a
-- straightforward client does), prepared (-M prepared). Ids and the key are drawn
-- before the transaction.
-- A mandate near a random point of its primary key (an index probe, not a scan).
SELECT mandate_id AS mid, merchant_id AS mer, gen_random_uuid() AS iid, gen_random_uuid() AS lid,
       'pgb-' || gen_random_uuid() AS k
  FROM ((SELECT mandate_id, merchant_id FROM mandate WHERE mandate_id >= gen_random_uuid() AND sandbox = 0
          ORDER BY mandate_id LIMIT 1)
        UNION ALL
        (SELECT mandate_id, merchant_id FROM mandate WHERE sandbox = 0 ORDER BY mandate_id LIMIT 1)) m
 LIMIT 1 \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT fingerprint, snapshot FROM intent WHERE idem_key = :k::text;
UPDATE bucket SET available = available - 1
 WHERE bucket_id = (SELECT bucket_id FROM bucket WHERE item_id = :item::uuid AND available >= 1 ORDER BY random() LIMIT 1)
   AND available >= 1 RETURNING bucket_id AS bid \gset
UPDATE mandate_shard SET remaining = remaining - 2500
 WHERE shard_id = (SELECT shard_id FROM mandate_shard WHERE mandate_id = :mid::uuid AND remaining >= 2500 ORDER BY random() LIMIT 1)
   AND remaining >= 2500 RETURNING shard_id AS sid \gset
INSERT INTO stock_claim (intent_id, bucket_id, item_id, quantity) VALUES (:iid::uuid, :bid::uuid, :item::uuid, 1);
INSERT INTO mandate_debit (intent_id, shard_id, mandate_id, amount_minor) VALUES (:iid::uuid, :sid::uuid, :mid::uuid, 2500);
INSERT INTO ledger_txn (ledger_txn_id, intent_id, amount_minor, currency) VALUES (:lid::uuid, :iid::uuid, 2500, 'USD');
INSERT INTO ledger_leg (leg_id, ledger_txn_id, account, signed_amount_minor, currency)
  VALUES (gen_random_uuid(), :lid::uuid, 'mandate:' || :mid::text, -2500, 'USD'), (gen_random_uuid(), :lid::uuid, 'merchant:' || :mer::text, 2500, 'USD');
INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, agent_id, quantity,
    amount_minor, currency, outcome, failure_code, ledger_txn_id, attempts, snapshot, created_at_ms)
  VALUES (:iid::uuid, :k::text, md5(:k::text), :mer::uuid, :mid::uuid, :item::uuid, 'pgbench', 1, 2500, 'USD', 'COMMITTED', NULL, :lid::uuid, 1,
    json_build_object('outcome', 'COMMITTED', 'intentId', :iid::text, 'ledgerTxnId', :lid::text,
      'chosenBucketId', :bid::text, 'amountMinor', 2500, 'currency', 'USD', 'attempts', 1, 'replayed', false)::text, 0);
COMMIT;
