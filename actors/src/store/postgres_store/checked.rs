//! Checked group writes on PostgreSQL ([`Store::put_phones_checked`](innoprov::store::Store)):
//! one transaction whose statements are sent without waiting for each other's answers
//! (tokio-postgres pipelines the queries of one client that are polled together), each
//! deciding inside itself whether it may write (the stored generation, the lease's token),
//! and one commit, so one log flush, for the group. Only a refused fenced write costs a
//! second look, to tell a stale write from a taken-over lease.

use innoprov::store::{CheckedWrite, StoreError, Token, WriteMode, WriteOutcome, encode};
use tokio_postgres::types::ToSql;

use super::{CHANNEL, PostgresStore, changed, generation_of, key, run};

/// A new ProvisioningPhone's record: written unless a newer generation is stored.
const PROVISION: &str = "WITH written AS (INSERT INTO phones (mac, record, generation) VALUES ($1, $2, $5) \
      ON CONFLICT (mac) DO UPDATE SET record = EXCLUDED.record, generation = EXCLUDED.generation \
      WHERE phones.generation IS NULL OR phones.generation <= EXCLUDED.generation RETURNING 1) \
    SELECT pg_notify($3, $4) FROM written";
/// The same, only while `$6` holds the phone's lease with token `$7` (the row locked).
const PROVISION_FENCED: &str = "WITH fence AS (SELECT 1 FROM leases \
      WHERE mac = $1 AND owner = $6 AND token = $7 FOR SHARE), \
    written AS (INSERT INTO phones (mac, record, generation) SELECT $1, $2, $5 WHERE EXISTS (SELECT 1 FROM fence) \
      ON CONFLICT (mac) DO UPDATE SET record = EXCLUDED.record, generation = EXCLUDED.generation \
      WHERE phones.generation IS NULL OR phones.generation <= EXCLUDED.generation RETURNING 1) \
    SELECT pg_notify($3, $4) FROM written";
/// A job's update: only onto the stored record of the same generation.
const UPDATE: &str = "WITH written AS (UPDATE phones SET record = $2 WHERE mac = $1 AND generation = $5 \
      RETURNING 1) \
    SELECT pg_notify($3, $4) FROM written";
/// The same, only while `$6` holds the phone's lease with token `$7` (the row locked).
const UPDATE_FENCED: &str = "WITH fence AS (SELECT 1 FROM leases \
      WHERE mac = $1 AND owner = $6 AND token = $7 FOR SHARE), \
    written AS (UPDATE phones SET record = $2 WHERE mac = $1 AND generation = $5 \
      AND EXISTS (SELECT 1 FROM fence) RETURNING 1) \
    SELECT pg_notify($3, $4) FROM written";

/// One write's parameters, owned for the statement.
struct Params {
    /// The phone's key.
    mac: Vec<u8>,
    /// The record's bytes.
    bytes: Vec<u8>,
    /// The `changed` notification.
    notice: String,
    /// The record's generation.
    generation: i64,
    /// The lease's token, when fenced.
    token: Option<Token>,
    /// Which statement.
    sql: &'static str,
}

impl PostgresStore {
    /// Writes the group in one transaction; see the module's doc.
    pub(super) fn write_checked(&self, writes: &[CheckedWrite<'_>]) -> Result<Vec<WriteOutcome>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let owner = match (self.owner(), writes.iter().any(|w| w.fence.is_some())) {
            (None, true) => {
                return Err(StoreError::Backend(
                    "a fenced write on a store without leases".into(),
                ));
            }
            (owner, _) => owner.unwrap_or_default().to_string(),
        };
        let params = writes
            .iter()
            .map(|w| {
                Ok(Params {
                    mac: key(&w.record.mac),
                    bytes: encode(w.record)?,
                    notice: changed(&w.record.mac),
                    generation: generation_of(w.record)?,
                    token: w.fence,
                    sql: match (w.mode, w.fence.is_some()) {
                        (WriteMode::Provision, false) => PROVISION,
                        (WriteMode::Provision, true) => PROVISION_FENCED,
                        (WriteMode::Update, false) => UPDATE,
                        (WriteMode::Update, true) => UPDATE_FENCED,
                    },
                })
            })
            .collect::<Result<Vec<Params>, StoreError>>()?;
        let written = self.retrying(&format!("write {} phones", writes.len()), |conn| {
            run(async {
                let mut statements = Vec::with_capacity(params.len());
                for p in &params {
                    statements.push(conn.prepared(p.sql).await?);
                }
                let tx = conn.client.transaction().await?;
                let args: Vec<Vec<&(dyn ToSql + Sync)>> = params
                    .iter()
                    .map(|p| {
                        let mut args: Vec<&(dyn ToSql + Sync)> =
                            vec![&p.mac, &p.bytes, &CHANNEL, &p.notice, &p.generation];
                        if let Some(token) = &p.token {
                            args.push(&owner);
                            args.push(token);
                        }
                        args
                    })
                    .collect();
                let queries = statements
                    .iter()
                    .zip(&args)
                    .map(|(statement, args)| tx.query(statement, args));
                let rows = futures_util::future::try_join_all(queries).await?;
                tx.commit().await?;
                Ok(rows.iter().map(|r| !r.is_empty()).collect::<Vec<bool>>())
            })
        })?;
        self.bump();
        writes
            .iter()
            .zip(written)
            .map(|(w, written)| match (written, w.fence) {
                (true, _) => Ok(WriteOutcome::Written),
                (false, None) => Ok(WriteOutcome::Stale),
                (false, Some(token)) => self.why_refused(w, token, &owner),
            })
            .collect()
    }

    /// Why a fenced write was refused: its token still current (then the generation refused
    /// it), or taken over (then the token is forgotten here if it is the one held).
    fn why_refused(
        &self,
        write: &CheckedWrite<'_>,
        token: Token,
        owner: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let mac = write.record.mac;
        let k = key(&mac);
        let current = self.retrying(&format!("lease of {mac}"), |client| {
            run(client.query_opt(
                "SELECT token FROM leases WHERE mac = $1 AND owner = $2",
                &[&k, &owner],
            ))
        })?;
        if current.is_some_and(|row| row.get::<_, Token>(0) == token) {
            return Ok(WriteOutcome::Stale);
        }
        if let Some(leases) = &self.leases {
            let mut held = leases.held();
            if held.get(&mac) == Some(&token) {
                held.remove(&mac);
            }
        }
        Ok(WriteOutcome::TakenOver)
    }
}
