//! `/metrics` shows the breakers every process persisted in the store (an
//! agent run's tool breaker, a `model call`'s model breaker), not only the
//! ones this server holds in memory: a serve process calls no models, so its
//! own view would always read "closed".

use std::time::Duration;

use toolhost::metrics::{ServerMetrics, persisted_breakers};
use toolhost::resilience::breaker::State;
use toolhost::resilience::{BreakerSink, Shared, unix_ms};
use toolhost::store::{Store, StoreOptions, StoreSink};

use crate::idempotency::within;

fn shared(state: State) -> Shared {
    Shared {
        state,
        open_until_ms: (state == State::Open).then(|| unix_ms() + 30_000),
        reopens: 0,
        opens: u64::from(state == State::Open),
        quota_hits: 0,
        consecutive_failures: 0,
        window: Vec::new(),
        updated_ms: unix_ms(),
    }
}

#[tokio::test]
async fn metrics_show_the_breakers_persisted_by_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("toolhost.db"), StoreOptions::default()).unwrap();
    // What an agent run and a `model call` in other processes leave behind.
    StoreSink::tools(store.clone()).publish("notes", &shared(State::Open));
    StoreSink::models(store.clone()).publish("primary", &shared(State::HalfOpen));
    breakers_reach_metrics(store).await;
}

#[tokio::test]
async fn metrics_show_the_breakers_persisted_by_other_hosts_on_postgres() {
    let url = crate::support::pg::fresh_db();
    // Another host publishes; this server's store only reads.
    let other = Store::open_postgres(&url, StoreOptions::default())
        .await
        .unwrap();
    StoreSink::tools(other.clone()).publish("notes", &shared(State::Open));
    StoreSink::models(other.clone()).publish("primary", &shared(State::HalfOpen));
    let here = Store::open_postgres(&url, StoreOptions::default())
        .await
        .unwrap();
    breakers_reach_metrics(here).await;
}

async fn breakers_reach_metrics(store: Store) {
    let metrics = ServerMetrics::new(4, persisted_breakers(store, Duration::from_millis(10)));
    let tool_open = r#"toolhost_breaker_state{dependency="tool:notes",state="open"} 1"#;
    let model_half = r#"toolhost_breaker_state{dependency="model:primary",state="half_open"} 1"#;
    let page = within(10, "persisted breakers reach /metrics", async {
        loop {
            let page = metrics.render();
            if page.contains(tool_open) && page.contains(model_half) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        page.contains(r#"toolhost_breaker_state{dependency="tool:notes",state="closed"} 0"#),
        "{page}"
    );
}
