//! The click journal's paths, seen from outside: a batch applied twice, an
//! instance `kill -9`ed under load whose segment a sibling or its restart
//! adopts (a torn tail ignored), its batch still open in PostgreSQL when the
//! adopter runs, PostgreSQL cut, and the journal's bound. What is checked
//! each time: no click answered `302` is lost, none is counted twice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::join_all;
use linkhub::db::clicks::{DayCount, SegmentApply, apply_segment};

use super::{
    click, click_until_cut, clicks_at_once, quiet_vars, segments, settled_clicks, stored_clicks,
};
use crate::support::*;

/// Applies `clicks` clicks of `link_id` today as segment `segment` up to
/// `end`; answers the outcome and the offset the transaction found applied
/// (`None`: it did not ask, the end was applied already).
async fn apply_clicks(
    conn: &mut AsyncPgConnection,
    segment: &str,
    end: i64,
    link_id: i64,
    clicks: i64,
) -> (SegmentApply, Option<i64>) {
    let mut found = None;
    let outcome = apply_segment(conn, segment, end, |last| {
        found = Some(last);
        Some(vec![DayCount {
            link_id,
            day: Utc::now().date_naive(),
            clicks,
        }])
    })
    .await
    .expect("applied");
    (outcome, found)
}

#[tokio::test]
async fn a_batch_applied_twice_counts_once() {
    use SegmentApply::{AlreadyApplied, Applied};
    let app = spawn_app().await;
    let (_, link) = app.user_with_link("Site", "https://example.com/").await;
    let id = link["id"].as_i64().expect("an id");
    let mut conn = AsyncPgConnection::establish(&app.database_url)
        .await
        .expect("connect");
    let c = &mut conn;
    assert_eq!(
        apply_clicks(c, "seg-a", 100, id, 7).await,
        (Applied, Some(-1))
    );
    assert_eq!(
        apply_clicks(c, "seg-a", 100, id, 7).await,
        (AlreadyApplied, None)
    );
    assert_eq!(
        apply_clicks(c, "seg-a", 60, id, 7).await,
        (AlreadyApplied, None)
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 7);
    // The next batch of that segment, and another segment's first, count;
    // each is counted beyond the offset its transaction found.
    assert_eq!(
        apply_clicks(c, "seg-a", 200, id, 7).await,
        (Applied, Some(100))
    );
    assert_eq!(
        apply_clicks(c, "seg-b", 100, id, 7).await,
        (Applied, Some(-1))
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 21);
    // Counts of a link deleted meanwhile are dropped, and the batch is recorded.
    let gone = 9_000_000_000;
    assert_eq!(apply_clicks(c, "seg-a", 300, gone, 1).await.0, Applied);
    assert_eq!(
        apply_clicks(c, "seg-a", 300, gone, 1).await.0,
        AlreadyApplied
    );
    // Counts that cannot be had roll the whole batch back.
    assert!(apply_segment(c, "seg-a", 400, |_| None).await.is_err());
    assert_eq!(
        apply_clicks(c, "seg-a", 400, id, 1).await,
        (Applied, Some(300))
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 22);
}

#[tokio::test]
async fn an_instance_killed_under_load_is_adopted_by_a_sibling_losing_and_doubling_nothing() {
    let sibling = spawn_app().await;
    let (_, link) = sibling.user_with_link("Site", "https://example.com/").await;
    let served = ServedBinary::start(&quiet_vars(&sibling.database_url)).await;
    let (answered, cut, workers) = click_until_cut(&served.app, &link["id"], 8).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    served.signal("KILL").await;
    join_all(workers).await;
    let answered_by_killed = answered.load(Ordering::SeqCst);
    assert!(
        answered_by_killed > 0,
        "the instance answered before the kill"
    );
    assert_eq!(clicks_at_once(&sibling, &link["id"], 100, 4).await, 100);
    // Every answered click counted; a request cut by the kill may have been
    // journaled in the instant before it (its client saw no answer).
    let answered = answered_by_killed + 100;
    let cut = cut.load(Ordering::SeqCst);
    let counted = settled_clicks(&sibling.database_url, &link["id"], answered as i64).await as u64;
    assert!(
        counted >= answered && counted <= answered + cut,
        "counted {counted}, answered {answered}, cut {cut}"
    );
    assert!(
        sibling
            .metric_sum("linkhub_click_batches_total", &[("outcome", "adopted")])
            .await
            >= 1.0,
        "the sibling adopted the killed instance's segment"
    );
    // Nothing is counted later either: the segment is gone, with its record.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        stored_clicks(&sibling.database_url, &link["id"]).await as u64,
        counted
    );
    assert_eq!(
        segments(&sibling.database_url).len(),
        1,
        "the sibling's own"
    );
}

#[tokio::test]
async fn a_restarted_instance_adopts_its_predecessors_segment_ignoring_a_torn_tail() {
    let database_url = create_test_database().await;
    let vars = quiet_vars(&database_url);
    let served = ServedBinary::start(&vars).await;
    let (_, link) = served
        .app
        .user_with_link("Site", "https://example.com/")
        .await;
    let (answered, cut, workers) = click_until_cut(&served.app, &link["id"], 8).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    served.signal("KILL").await;
    join_all(workers).await;
    let answered = answered.load(Ordering::SeqCst);
    let cut = cut.load(Ordering::SeqCst);
    assert!(answered > 0, "the instance answered before the kill");
    // A record torn by the kill: half of one, appended by hand.
    let left = segments(&database_url);
    assert_eq!(left.len(), 1, "the killed instance's segment: {left:?}");
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&left[0])
            .expect("open the segment");
        file.write_all(&[0x2a; 11]).expect("a torn record");
    }
    let restarted = ServedBinary::start(&vars).await;
    let counted = settled_clicks(&database_url, &link["id"], answered as i64).await as u64;
    assert!(
        counted >= answered && counted <= answered + cut,
        "counted {counted}, answered {answered}, cut {cut}"
    );
    assert!(
        restarted
            .app
            .metric_sum("linkhub_click_batches_total", &[("outcome", "adopted")])
            .await
            >= 1.0,
        "the restarted instance adopted the segment"
    );
    assert!(!left[0].exists(), "the adopted segment is removed");
    // The restarted instance counts on, in a segment of its own.
    assert_eq!(clicks_at_once(&restarted.app, &link["id"], 20, 4).await, 20);
    assert_eq!(
        settled_clicks(&database_url, &link["id"], counted as i64 + 20).await as u64,
        counted + 20
    );
}

#[tokio::test]
async fn a_dead_instances_batch_still_open_in_postgresql_is_not_counted_twice() {
    let sibling = spawn_app().await;
    let (_, link) = sibling.user_with_link("Site", "https://example.com/").await;
    let served = ServedBinary::start(&quiet_vars(&sibling.database_url)).await;
    // Its batch waits on the lock, mid-transaction, holding its segment's
    // row, when the process dies.
    let lock = TableLock::take(&sibling.database_url, "link_clicks").await;
    assert_eq!(clicks_at_once(&served.app, &link["id"], 10, 2).await, 10);
    until_sessions_wait_for_a_lock(&sibling.database_url, 1).await;
    served.signal("KILL").await;
    // The sibling adopts: its transaction waits for the dead one's row.
    until_sessions_wait_for_a_lock(&sibling.database_url, 2).await;
    lock.release().await;
    // The dead batch ran once the lock went and was rolled back for want of
    // a COMMIT; the adopter then counted its clicks, once.
    assert_eq!(
        settled_clicks(&sibling.database_url, &link["id"], 10).await,
        10
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stored_clicks(&sibling.database_url, &link["id"]).await, 10);
    assert_eq!(clicks_at_once(&sibling, &link["id"], 40, 4).await, 40);
    assert_eq!(
        settled_clicks(&sibling.database_url, &link["id"], 50).await,
        50
    );
}

/// While PostgreSQL is cut, the cache serves no read either: its owed-bump
/// listener lost its connection, so reads bypass Redis (docs/CACHE.md) and
/// a redirect cannot read its link's URL. What is checked is what the
/// journal owes: a click answered `302` then is counted once PostgreSQL is
/// back, and a `503` counts nothing.
#[tokio::test]
async fn clicks_answered_while_postgresql_is_cut_count_once_it_is_back() {
    let proxy = TcpProxy::start(database_server_addr()).await;
    let app = spawn_cached_with(|s| {
        s.database_url = database_url_through(&s.database_url, proxy.addr());
        s.db_timeout = Duration::from_millis(300);
    })
    .await;
    // The app reaches PostgreSQL through the proxy, the test directly.
    let direct_url = app.database_url.clone();
    let (_, link) = app.user_with_link("Site", "https://example.com/").await;
    // The link's URL is cached (and the day's visitor salt loaded).
    assert_eq!(clicks_at_once(&app, &link["id"], 2, 1).await, 2);
    assert_eq!(settled_clicks(&direct_url, &link["id"], 2).await, 2);
    proxy.cut();
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..20 {
        match click(&app, &link["id"], "agent").await.status().as_u16() {
            302 => answered += 1,
            503 => refused += 1,
            other => panic!("a click answered {other} while PostgreSQL was cut"),
        }
    }
    println!("while PostgreSQL was cut: {answered} redirects, {refused} 503s");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(stored_clicks(&direct_url, &link["id"]).await, 2);
    proxy.restore();
    assert_eq!(
        settled_clicks(&direct_url, &link["id"], 2 + answered).await,
        2 + answered
    );
    // Once it is back, redirects answer and count again.
    assert_eq!(clicks_at_once(&app, &link["id"], 10, 2).await, 10);
    assert_eq!(
        settled_clicks(&direct_url, &link["id"], 12 + answered).await,
        12 + answered
    );
}

#[tokio::test]
async fn the_journals_bound_answers_503_with_retry_after_and_loses_nothing_answered() {
    // Room for 30 clicks of 20 bytes not yet applied.
    let app = spawn_app_with(|s| s.clicks_journal_max_bytes = 600).await;
    let (_, link) = app.user_with_link("Site", "https://example.com/").await;
    // Nothing can be applied while the table is locked.
    let lock = TableLock::take(&app.database_url, "link_clicks").await;
    let mut answered = 0;
    let mut refused = 0;
    for _ in 0..40 {
        let response = click(&app, &link["id"], "agent").await;
        match response.status().as_u16() {
            302 => answered += 1,
            503 => {
                refused += 1;
                assert!(header(&response, "retry-after").is_some());
                expect_error(response, 503, "service_unavailable").await;
            }
            other => panic!("a click answered {other}"),
        }
    }
    assert_eq!((answered, refused), (30, 10));
    lock.release().await;
    assert_eq!(settled_clicks(&app.database_url, &link["id"], 30).await, 30);
    // Applied, the bytes no longer count: redirects answer again.
    assert_eq!(clicks_at_once(&app, &link["id"], 20, 2).await, 20);
    assert_eq!(settled_clicks(&app.database_url, &link["id"], 50).await, 50);
    assert_eq!(
        app.metric_sum("linkhub_clicks_total", &[("outcome", "busy")])
            .await,
        10.0
    );
}
