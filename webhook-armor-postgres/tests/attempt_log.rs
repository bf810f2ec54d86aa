//! Every processing attempt is recorded, whichever path the ack takes.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_postgres::PostgresConfig;

#[tokio::test]
async fn a_retried_then_completed_job_has_both_attempts_logged() {
    for group_commit in [true, false] {
        let config = PostgresConfig::new(common::unique_schema("attempts"))
            .max_connections(2)
            .group_commit(group_commit);
        let backend = common::backend_with(config).await;
        backend
            .enqueue(NewJob::new("evt_history", &b"{}"[..]))
            .await
            .unwrap();
        let first = backend.lease(1, Duration::from_secs(30)).await.unwrap();
        backend
            .nack(&first[0], Duration::ZERO, "receiver said 503")
            .await
            .unwrap();
        let second = backend.lease(1, Duration::from_secs(30)).await.unwrap();
        assert_eq!(second[0].job.attempt, 2);
        backend.ack(&second[0]).await.unwrap();
        // A late ack of the first lease changes nothing, and logs nothing.
        assert!(backend.ack(&first[0]).await.is_err());

        let history = backend.attempts("evt_history").await.unwrap();
        let seen: Vec<(u32, &str, Option<&str>)> = history
            .iter()
            .map(|a| (a.attempt, a.outcome.as_str(), a.error.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "retrying", Some("receiver said 503")),
                (2, "completed", None)
            ],
            "group commit {group_commit}"
        );
        assert!(history.iter().all(|a| a.duration_ms >= 0));
    }
}
