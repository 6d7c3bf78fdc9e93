//! The lease queries against a real database: a lease is taken by one
//! replica only, renewed only by its owner while unexpired, taken over only
//! once expired (with a new epoch), and freed by `expire_replicas`.

use super::*;
use std::time::Duration;

fn me(id: &str) -> ReplicaInfo {
    ReplicaInfo {
        replica_id: id.to_owned(),
        instance_id: "i".to_owned(),
        host: "h".to_owned(),
        pid: 1,
        boot_id: "b".to_owned(),
        version: "0".to_owned(),
    }
}

const P: Duration = Duration::from_secs(30);

async fn epoch(pool: &PgPool, id: i64) -> i64 {
    sqlx::query_scalar("SELECT epoch FROM mqtt_connection_leases WHERE connection_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_lease_has_one_owner_until_it_expires(pool: PgPool) {
    for r in ["a", "b"] {
        heartbeat(&pool, &me(r), P).await.unwrap();
    }
    assert_eq!(
        acquire_leases(&pool, "i", "a", &[1, 2], P).await.unwrap(),
        vec![1, 2]
    );
    // Taken: b gets nothing, and cannot renew what it does not own.
    assert!(
        acquire_leases(&pool, "i", "b", &[1, 2], P)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(renew_leases(&pool, "i", "b", P).await.unwrap().is_empty());
    let mut renewed = renew_leases(&pool, "i", "a", P).await.unwrap();
    renewed.sort_unstable();
    assert_eq!(renewed, vec![1, 2]);
    assert_eq!(epoch(&pool, 1).await, 1);

    // Expired: a can no longer renew it, b takes it with a new epoch.
    sqlx::query("UPDATE mqtt_connection_leases SET expires_at = now() - interval '1 s' WHERE connection_id = 1")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(renew_leases(&pool, "i", "a", P).await.unwrap(), vec![2]);
    assert_eq!(
        acquire_leases(&pool, "i", "b", &[1], P).await.unwrap(),
        vec![1]
    );
    assert_eq!(epoch(&pool, 1).await, 2);

    let view = lease_view(&pool, "i", "a").await.unwrap();
    assert_eq!(view.replicas, vec!["a", "b"]);
    assert_eq!(view.leases, vec![(1, "b".to_owned()), (2, "a".to_owned())]);
    // Another instance's leases are its own.
    assert_eq!(
        acquire_leases(&pool, "other", "c", &[1], P).await.unwrap(),
        vec![1]
    );
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_dead_replica_of_this_machine_is_freed_at_once(pool: PgPool) {
    heartbeat(&pool, &me("old"), P).await.unwrap();
    acquire_leases(&pool, "i", "old", &[7], P).await.unwrap();
    let new = ReplicaInfo {
        pid: 2,
        ..me("new")
    };
    let local = local_replicas(&pool, &new).await.unwrap();
    assert_eq!(local, vec![("old".to_owned(), 1)]);
    assert_eq!(
        expire_replicas(&pool, "i", &["old".to_owned()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        acquire_leases(&pool, "i", "new", &[7], P).await.unwrap(),
        vec![7]
    );
    assert!(list_replicas(&pool, "i").await.unwrap().is_empty());
    // Another machine's replicas are never "local".
    heartbeat(
        &pool,
        &ReplicaInfo {
            host: "elsewhere".to_owned(),
            ..me("far")
        },
        P,
    )
    .await
    .unwrap();
    assert!(local_replicas(&pool, &new).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn leaving_releases_everything(pool: PgPool) {
    heartbeat(&pool, &me("a"), P).await.unwrap();
    acquire_leases(&pool, "i", "a", &[1, 2, 3], P)
        .await
        .unwrap();
    release_leases(&pool, "i", "a", &[2]).await.unwrap();
    let rows = list_replicas(&pool, "i").await.unwrap();
    assert_eq!((rows[0].owned, rows[0].alive), (2, true));
    leave(&pool, "i", "a").await.unwrap();
    assert!(lease_view(&pool, "i", "a").await.unwrap().leases.is_empty());
    assert!(list_replicas(&pool, "i").await.unwrap().is_empty());
}
