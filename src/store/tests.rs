//! The store client against a real etcd.

use super::etcd::{Compare, Etcd, Op, prefix_end};
use super::keys::Keys;
use super::resources::{self, Edit, WriteError};
use super::test_etcd::EtcdServer;
use super::watch::{Event, Watch, WatchEnd};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_watch_from_the_read_revision_misses_no_write() {
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let client = Etcd::new(vec![etcd.endpoint()]);
        client.put("/w/a", "1", 0).await.unwrap();
        let (read_at, kvs) = client.range_prefix("/w/").await.unwrap();
        assert_eq!(kvs.len(), 1);
        // Written after the read, before the watch: APISIX lost exactly such writes.
        client.put("/w/b", "2", 0).await.unwrap();
        let mut watch = Watch::open(&client, "/w/", &prefix_end("/w/"), read_at + 1)
            .await
            .unwrap();
        let (rev, events) = watch.next().await.unwrap();
        assert_eq!(rev, read_at + 1);
        assert!(matches!(&events[..], [Event::Put(kv)] if kv.key == "/w/b" && kv.value == "2"));
        client
            .txn(&[], &[Op::Delete("/w/a".into())], &[])
            .await
            .unwrap();
        let (_, events) = watch.next().await.unwrap();
        assert!(matches!(&events[..], [Event::Delete(kv)] if kv.key == "/w/a"));
    });
}

#[test]
fn a_watch_from_a_compacted_revision_says_so() {
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let client = Etcd::new(vec![etcd.endpoint()]);
        for i in 0..5 {
            client.put("/w/a", &i.to_string(), 0).await.unwrap();
        }
        let compacted = etcd.compact();
        // etcd creates the watch, then cancels it saying how far it compacted.
        let opened = Watch::open(&client, "/w/", &prefix_end("/w/"), 2).await;
        let e = match opened {
            Ok(mut watch) => watch.next().await.unwrap_err(),
            Err(e) => e,
        };
        assert!(matches!(e, WatchEnd::Compacted(r) if r == compacted), "{e}");
    });
}

#[test]
fn an_unreachable_endpoint_is_skipped() {
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let dead = format!("127.0.0.1:{}", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let client = Etcd::new(vec![dead, etcd.endpoint()]);
        client.put("/w/x", "1", 0).await.unwrap();
        assert_eq!(client.endpoints()[0], etcd.endpoint());
        let none = Etcd::new(vec!["127.0.0.1:1".into()]);
        assert!(none.range_prefix("/").await.is_err());
    });
}

#[test]
fn leases_hold_keys_until_they_lapse_or_are_revoked() {
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let client = Etcd::new(vec![etcd.endpoint()]);
        let lease = client.grant(30).await.unwrap();
        client.put("/w/held", "x", lease).await.unwrap();
        assert!(client.keep_alive(lease).await.unwrap() > 0);
        client.revoke(lease).await.unwrap();
        assert!(client.range("/w/held", None).await.unwrap().1.is_empty());
        assert_eq!(client.keep_alive(lease).await.unwrap(), 0);
        client.revoke(lease).await.unwrap();
        // A key created only if absent: the election's transaction.
        let key = "/w/driver".to_owned();
        let elect = |id: &str| {
            let (c, key, id) = (&client, key.clone(), id.to_owned());
            async move {
                c.txn(
                    &[Compare::Created(key.clone(), 0)],
                    &[Op::Put(key, id, 0)],
                    &[],
                )
                .await
                .unwrap()
                .0
            }
        };
        assert!(elect("a").await);
        assert!(!elect("b").await);
    });
}

#[test]
fn two_operators_cannot_overwrite_each_other_unseen() {
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let client = Etcd::new(vec![etcd.endpoint()]);
        let keys = Keys::new("/ops");
        let first = resources::read(&client, &keys).await.unwrap();
        let second = resources::read(&client, &keys).await.unwrap();
        let key = keys.resource("VirtualService", "default", "a");
        resources::write(
            &client,
            &keys,
            &first,
            &[Edit::Put(key.clone(), "one".into())],
            "a",
        )
        .await
        .unwrap();
        let late = resources::write(
            &client,
            &keys,
            &second,
            &[Edit::Put(key.clone(), "two".into())],
            "b",
        )
        .await;
        assert!(matches!(late, Err(WriteError::Conflict(_))), "{late:?}");
        let now = resources::read(&client, &keys).await.unwrap();
        assert_eq!(now.docs[&key].value, "one");
        // A key written around weir also counts as a change.
        etcd.put(&keys.resource("Gateway", "default", "g"), "x");
        let late = resources::write(&client, &keys, &now, &[Edit::Delete(key)], "c").await;
        assert!(matches!(late, Err(WriteError::Conflict(_))), "{late:?}");
    });
}

#[test]
fn a_change_too_large_for_one_transaction_is_refused_whole() {
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let client = Etcd::new(vec![etcd.endpoint()]);
        let keys = Keys::new("/big");
        let stored = resources::read(&client, &keys).await.unwrap();
        let edits: Vec<Edit> = (0..200)
            .map(|i| {
                Edit::Put(
                    keys.resource("VirtualService", "default", &format!("v{i}")),
                    "x".into(),
                )
            })
            .collect();
        let e = resources::write(&client, &keys, &stored, &edits, "t")
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("--max-txn-ops"), "{e}");
        assert!(
            resources::read(&client, &keys)
                .await
                .unwrap()
                .docs
                .is_empty()
        );
    });
}
