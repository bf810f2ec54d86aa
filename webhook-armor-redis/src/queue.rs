use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use webhook_armor::queue::{Enqueued, Job, Lease, LeaseToken, NewJob, Queue, QueueStats};
use webhook_armor::{Error, Result};

use webhook_armor::batch::{AckRequest, EnqueueRequest, submit};

use crate::{RedisBackend, backend, batch, millis, scripts};

/// One leased job as the lease script returns it: id, payload, metadata,
/// attempt, enqueued at (ms), last error. Its token is the one passed at its
/// position.
type LeasedRow = (String, Vec<u8>, String, u32, i64, String);

pub(crate) fn encode_metadata(metadata: &BTreeMap<String, String>) -> String {
    serde_json::to_string(metadata).expect("string maps serialise")
}

pub(crate) fn decode_metadata(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text)
        .map_err(|e| Error::Backend(format!("corrupt job metadata: {e}").into()))
}

impl RedisBackend {
    async fn fenced(
        &self,
        script: &redis::Script,
        keys: &[String],
        lease: &Lease,
        extra: &[String],
    ) -> Result<()> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(&lease.job.id).arg(&lease.token.0);
        for arg in extra {
            invocation.arg(arg);
        }
        let applied: i64 = invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if applied == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost)
        }
    }
}

#[async_trait]
impl Queue for RedisBackend {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        if let Some(enqueues) = &self.enqueues {
            return submit(enqueues, |reply| EnqueueRequest { job, reply }).await;
        }
        let outcome = batch::enqueue_jobs(&mut self.connection(), &self.keys, [&job]).await;
        batch::enqueue_one(outcome)
    }

    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<Lease>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut invocation = scripts::LEASE.prepare_invoke();
        invocation
            .key(self.keys.ready())
            .key(self.keys.scheduled())
            .key(self.keys.leased())
            .arg(max)
            .arg(millis(lease_for))
            .arg(self.keys.job_prefix());
        let tokens: Vec<LeaseToken> = (0..max).map(|_| LeaseToken::random()).collect();
        for token in &tokens {
            invocation.arg(&token.0);
        }
        let rows: Vec<LeasedRow> = invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if rows.len() > tokens.len() {
            return Err(Error::Backend(
                format!("Redis leased {} jobs, {max} asked for", rows.len()).into(),
            ));
        }
        rows.into_iter()
            .zip(tokens)
            .map(
                |((id, payload, metadata, attempt, enqueued_at_ms, last_error), token)| {
                    let mut job =
                        Job::from_new(NewJob::new(id, Bytes::from(payload)), enqueued_at_ms);
                    job.metadata = decode_metadata(&metadata)?.into();
                    job.attempt = attempt;
                    job.last_error = (!last_error.is_empty()).then_some(last_error);
                    Ok(Lease { job, token })
                },
            )
            .collect()
    }

    async fn ack(&self, lease: &Lease) -> Result<()> {
        if let Some(acks) = &self.acks {
            return submit(acks, |reply| AckRequest {
                id: lease.job.id.clone(),
                token: lease.token.0.clone(),
                reply,
            })
            .await;
        }
        let retention = millis(self.config.completed_retention);
        let lease = [(lease.job.id.as_str(), lease.token.0.as_str())];
        let outcome = batch::ack_leases(&mut self.connection(), &self.keys, retention, lease).await;
        batch::ack_one(outcome)
    }

    async fn nack(&self, lease: &Lease, retry_in: Duration, error: &str) -> Result<()> {
        let keys = [
            self.keys.job(&lease.job.id),
            self.keys.leased(),
            self.keys.scheduled(),
        ];
        let delay = u64::try_from(retry_in.as_millis())
            .unwrap_or(u64::MAX)
            .to_string();
        self.fenced(&scripts::NACK, &keys, lease, &[delay, error.to_owned()])
            .await
    }

    async fn defer(&self, lease: &Lease, delay: Duration) -> Result<()> {
        let keys = [
            self.keys.job(&lease.job.id),
            self.keys.leased(),
            self.keys.scheduled(),
        ];
        let delay = u64::try_from(delay.as_millis())
            .unwrap_or(u64::MAX)
            .to_string();
        self.fenced(&scripts::DEFER, &keys, lease, &[delay]).await
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<()> {
        let keys = [
            self.keys.job(&lease.job.id),
            self.keys.leased(),
            self.keys.letters(),
            self.keys.letter(&lease.job.id),
            self.keys.pending_letters(),
        ];
        self.fenced(&scripts::DEAD_LETTER, &keys, lease, &[reason.to_owned()])
            .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let (ready, scheduled, leased, dead): (u64, u64, u64, Option<i64>) = redis::pipe()
            .llen(self.keys.ready())
            .zcard(self.keys.scheduled())
            .zcard(self.keys.leased())
            .get(self.keys.pending_letters())
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        Ok(QueueStats {
            ready,
            scheduled,
            leased,
            dead_lettered: u64::try_from(dead.unwrap_or(0)).unwrap_or(0),
        })
    }

    async fn wait_for_work(&self, timeout: Duration) {
        tokio::time::sleep(timeout.min(self.config.idle_poll)).await;
    }
}
