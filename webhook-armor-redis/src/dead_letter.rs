use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use webhook_armor::dead_letter::{
    DeadLetter, DeadLetterFilter, DeadLetterState, DeadLetterStore, Page, Replayed, decode_cursor,
    encode_cursor,
};
use webhook_armor::queue::{Job, NewJob};
use webhook_armor::{Error, Result};

use crate::queue::decode_metadata;
use crate::{RedisBackend, backend, scripts};

/// Index entries fetched per round trip while listing.
const LIST_BATCH: isize = 200;

fn field<'a>(fields: &'a HashMap<String, Vec<u8>>, name: &str) -> Result<&'a [u8]> {
    fields
        .get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::Backend(format!("dead letter lacks field {name}").into()))
}

fn number(fields: &HashMap<String, Vec<u8>>, name: &str) -> Result<i64> {
    std::str::from_utf8(field(fields, name)?)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Backend(format!("dead letter field {name} is not a number").into()))
}

fn letter_from(id: &str, fields: &HashMap<String, Vec<u8>>) -> Result<DeadLetter> {
    let metadata = decode_metadata(&String::from_utf8_lossy(field(fields, "meta")?))?;
    let reason = String::from_utf8_lossy(field(fields, "reason")?).into_owned();
    let attempts = u32::try_from(number(fields, "attempts")?).unwrap_or(0);
    let mut job = Job::from_new(
        NewJob::new(id, Bytes::copy_from_slice(field(fields, "payload")?)),
        number(fields, "enq")?,
    );
    job.metadata = metadata.into();
    job.attempt = attempts;
    job.last_error = Some(reason.clone());
    let state = match field(fields, "state")? {
        b"replayed" => DeadLetterState::Replayed,
        _ => DeadLetterState::Pending,
    };
    let mut letter = DeadLetter::from_job(job, reason, number(fields, "at")?);
    letter.state = state;
    Ok(letter)
}

#[async_trait]
impl DeadLetterStore for RedisBackend {
    async fn list(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeadLetter>> {
        let start = after.map(decode_cursor).transpose()?;
        let min_score = start.as_ref().map_or(i64::MIN, |(at, _)| *at);
        let min = if min_score == i64::MIN {
            "-inf".to_owned()
        } else {
            min_score.to_string()
        };
        let mut connection = self.connection();
        let mut items: Vec<DeadLetter> = Vec::new();
        let mut offset: isize = 0;
        loop {
            let batch: Vec<(String, i64)> = redis::cmd("ZRANGE")
                .arg(self.keys.letters())
                .arg(&min)
                .arg("+inf")
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(offset)
                .arg(LIST_BATCH)
                .arg("WITHSCORES")
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            offset += LIST_BATCH;
            let exhausted = batch.len() < LIST_BATCH as usize;
            let wanted: Vec<(String, i64)> = batch
                .into_iter()
                .filter(|(id, at)| {
                    start
                        .as_ref()
                        .is_none_or(|(s_at, s_id)| (*at, id) > (*s_at, s_id))
                })
                .collect();
            let mut pipe = redis::pipe();
            for (id, _) in &wanted {
                pipe.hgetall(self.keys.letter(id));
            }
            let rows: Vec<HashMap<String, Vec<u8>>> =
                pipe.query_async(&mut connection).await.map_err(backend)?;
            for ((id, _), fields) in wanted.iter().zip(rows) {
                if fields.is_empty() {
                    continue; // discarded between the two reads
                }
                let letter = letter_from(id, &fields)?;
                if !filter.matches(&letter) {
                    continue;
                }
                if items.len() == limit {
                    let last = items.last().expect("limit > 0 when full");
                    let next = encode_cursor(last.dead_lettered_at_ms, &last.job.id);
                    return Ok(Page {
                        items,
                        next: Some(next),
                    });
                }
                items.push(letter);
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>> {
        let fields: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.keys.letter(id))
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if fields.is_empty() {
            return Ok(None);
        }
        letter_from(id, &fields).map(Some)
    }

    async fn replay(&self, id: &str) -> Result<Replayed> {
        let outcome: i64 = scripts::REPLAY
            .key(self.keys.letter(id))
            .key(self.keys.job(id))
            .key(self.keys.ready())
            .key(self.keys.pending_letters())
            .arg(id)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        match outcome {
            1 => Ok(Replayed::Requeued),
            0 => Ok(Replayed::AlreadyReplayed),
            _ => Err(Error::NotFound(format!("dead letter {id}"))),
        }
    }

    async fn discard(&self, id: &str) -> Result<()> {
        let deleted: i64 = scripts::DISCARD
            .key(self.keys.letter(id))
            .key(self.keys.job(id))
            .key(self.keys.letters())
            .key(self.keys.pending_letters())
            .arg(id)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(Error::NotFound(format!("dead letter {id}")))
        }
    }
}
