//! Self-tests of the test kit's [`hold_lock`]: queries on the locked table
//! wait until the lock is released or dropped; other tables do not.

use mqtt_supervisor_tests::hold_lock;
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn count_connections(pool: &PgPool) -> JoinHandle<Result<i64, sqlx::Error>> {
    let pool = pool.clone();
    tokio::spawn(async move {
        sqlx::query_scalar("SELECT count(*) FROM mqtt_connections")
            .fetch_one(&pool)
            .await
    })
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn hold_lock_blocks_the_table_until_release(pool: PgPool) {
    let lock = hold_lock(&pool, "mqtt_connections").await;
    let mut count = count_connections(&pool);
    assert!(
        timeout(Duration::from_secs(1), &mut count).await.is_err(),
        "a query on the locked table waits"
    );
    let other: i64 = timeout(
        WAIT,
        sqlx::query_scalar("SELECT count(*) FROM mqtt_connection_state").fetch_one(&pool),
    )
    .await
    .expect("another table is not locked")
    .unwrap();
    assert_eq!(other, 0);

    lock.release().await;
    assert_eq!(timeout(WAIT, count).await.unwrap().unwrap().unwrap(), 0);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn hold_lock_is_released_when_dropped(pool: PgPool) {
    let lock = hold_lock(&pool, "public.mqtt_connections").await;
    let mut count = count_connections(&pool);
    assert!(timeout(Duration::from_secs(1), &mut count).await.is_err());
    drop(lock);
    assert_eq!(timeout(WAIT, count).await.unwrap().unwrap().unwrap(), 0);
}
