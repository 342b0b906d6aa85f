//! Kernels written the way people write them first, for the isolation experiment
//! (`swarm selftest --isolation-matrix`): correct one purchase at a time, wrong under
//! concurrency at weak isolation. Like the sabotaged kernels they are the reference kernel
//! running other statements, each rewrite asserting that its pattern is there, and nothing
//! on the production path reaches them. PostgreSQL only (the embedded kernel has one
//! writer, so nothing interleaves).

use super::sabotage::rewrite;
use crate::sut::kernel::Sql;

/// One naive kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naive {
    /// Stock is read, then written back: `available = <what was read> - quantity` on the
    /// bucket read, with no condition at write time (a lost update when two purchases read
    /// the same value).
    StockReadThenWrite,
    /// The cap is decided from the SUM of the mandate's shards, and the shard read is
    /// written back from what was read (`remaining = <read> - amount`), unconditionally.
    CapFromShardSum,
}

impl Naive {
    pub const ALL: [Naive; 2] = [Naive::StockReadThenWrite, Naive::CapFromShardSum];

    pub fn name(self) -> &'static str {
        match self {
            Naive::StockReadThenWrite => "naive stock (read, then write back)",
            Naive::CapFromShardSum => "naive cap (SUM over shards, write back)",
        }
    }

    /// The statements this kernel runs.
    pub fn sql(self) -> Sql {
        let mut sql = Sql::reference();
        let pg = &mut sql.postgres;
        match self {
            Naive::StockReadThenWrite => {
                rewrite(
                    &mut pg.purchase,
                    "), claim AS (
    UPDATE bucket SET available = available - $3
    WHERE bucket_id = (SELECT bucket_id FROM bucket
                       WHERE item_id = $2 AND available >= $3
                         AND (SELECT fresh AND stock AND funds FROM plan)
                       ORDER BY random() LIMIT 1)
      AND available >= $3
",
                    "), picked AS (
    SELECT bucket_id, available FROM bucket
    WHERE item_id = $2 AND available >= $3 AND (SELECT fresh AND stock AND funds FROM plan)
    ORDER BY random() LIMIT 1
), claim AS (
    UPDATE bucket SET available = (SELECT available FROM picked) - $3
    WHERE bucket_id = (SELECT bucket_id FROM picked)
",
                );
            }
            Naive::CapFromShardSum => {
                rewrite(
                    &mut pg.purchase,
                    "EXISTS (SELECT 1 FROM mandate_shard WHERE mandate_id = $4 AND remaining >= $5) AS funds",
                    "(SELECT sum(remaining)::BIGINT FROM mandate_shard WHERE mandate_id = $4) >= $5 AS funds",
                );
                rewrite(
                    &mut pg.purchase,
                    "), debit AS (
    UPDATE mandate_shard SET remaining = remaining - $5
    WHERE shard_id = (SELECT shard_id FROM mandate_shard
                      WHERE mandate_id = $4 AND remaining >= $5
                        AND EXISTS (SELECT 1 FROM claim)
                      ORDER BY random() LIMIT 1)
      AND remaining >= $5
",
                    "), shard AS (
    SELECT shard_id, remaining FROM mandate_shard
    WHERE mandate_id = $4 AND remaining >= $5 ORDER BY random() LIMIT 1
), debit AS (
    UPDATE mandate_shard SET remaining = (SELECT remaining FROM shard) - $5
    WHERE shard_id = (SELECT shard_id FROM shard) AND EXISTS (SELECT 1 FROM claim)
",
                );
            }
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_naive_kernel_rewrites_the_reference_statement() {
        for naive in Naive::ALL {
            let sql = naive.sql();
            assert_ne!(
                sql.postgres.purchase,
                Sql::reference().postgres.purchase,
                "{naive:?}"
            );
            // The write no longer carries its condition.
            let purchase = &sql.postgres.purchase;
            assert!(
                purchase.contains("FROM picked) - $3") || purchase.contains("FROM shard) - $5"),
                "{naive:?}"
            );
        }
    }

    /// Each naive kernel has a decline-only statement too, and it declines by the naive
    /// kernel's own plan (the sum of the shards for `CapFromShardSum`): the matrix's
    /// declines go through the same statements a naive server would send.
    #[test]
    fn every_naive_kernel_derives_its_decline_only_statement() {
        for naive in Naive::ALL {
            let decline = naive.sql().postgres.decline_only();
            let decline = decline.unwrap_or_else(|| panic!("{naive:?}: none derived"));
            assert!(!decline.contains("UPDATE"), "{naive:?}");
            assert!(decline.contains("INSERT INTO intent"), "{naive:?}");
        }
        let sum = Naive::CapFromShardSum.sql().postgres.decline_only();
        assert!(sum.is_some_and(|d| d.contains("sum(remaining)")));
    }
}
