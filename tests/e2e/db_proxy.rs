//! Self-tests of the test kit's [`DbProxy`]: a connection through it
//! works, `freeze` black-holes it until `thaw`, `cut` closes it and refuses
//! new ones until `restore`.

use mqtt_supervisor_tests::DbProxy;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn select_one(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(conn).await
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn db_proxy_freeze_black_holes_until_thaw(pool: PgPool) {
    let proxy = DbProxy::start_for(&pool).await;
    let url = proxy.url_for(&pool);
    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert_eq!(select_one(&mut conn).await.unwrap(), 1);
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        Some(database.as_str()),
        pool.connect_options().get_database()
    );
    assert_eq!(proxy.connections(), 1);

    proxy.freeze().await;
    let mut query = tokio::spawn(async move {
        let result = select_one(&mut conn).await;
        (conn, result)
    });
    let second_url = url.clone();
    let mut connecting = tokio::spawn(async move { PgConnection::connect(&second_url).await });
    assert!(
        timeout(Duration::from_secs(2), &mut query).await.is_err(),
        "a frozen database answers nothing"
    );
    assert!(!connecting.is_finished(), "nor new connections");
    assert_eq!(proxy.connections(), 1, "the held socket is still open");

    proxy.thaw().await;
    let (_conn, result) = timeout(WAIT, &mut query).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), 1);
    let mut second = timeout(WAIT, &mut connecting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(select_one(&mut second).await.unwrap(), 1);
    assert_eq!(proxy.connections(), 2);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn db_proxy_cut_closes_and_refuses_until_restore(pool: PgPool) {
    let proxy = DbProxy::start_for(&pool).await;
    let url = proxy.url_for(&pool);
    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert_eq!(select_one(&mut conn).await.unwrap(), 1);

    proxy.cut().await;
    assert_eq!(proxy.connections(), 0);
    let failed = timeout(WAIT, select_one(&mut conn)).await.unwrap();
    assert!(failed.is_err(), "{failed:?}");
    let refused = timeout(WAIT, PgConnection::connect(&url)).await.unwrap();
    assert!(
        matches!(&refused, Err(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );

    proxy.restore().await;
    let mut again = timeout(WAIT, PgConnection::connect(&url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(select_one(&mut again).await.unwrap(), 1);
    assert_eq!(proxy.connections(), 1);
}
