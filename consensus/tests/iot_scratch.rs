use bytes::Bytes;
use iotdb_consensus::iot::*;

#[test]
fn shrink_releases() {
    let mut r = Replica::new(1, IotConfig::default(), Recovered::default());
    let mut out = Vec::new();
    let view = |in_sync: Vec<u64>, version, running: Vec<u64>| GroupView {
        epoch: 1, leader: 1, replicas: vec![1, 2], in_sync, in_sync_version: version, running, ack: AckMode::InSync,
    };
    r.step(Event::Tick { now_ms: 0 }, &mut out);
    r.step(Event::View(view(vec![1, 2], 0, vec![1, 2])), &mut out);
    println!("after view: {out:?}"); out.clear();
    // follower answers the probe
    for t in 1..30 { r.step(Event::Tick { now_ms: t * 100 }, &mut out); }
    println!("ticks: {:?}", out.iter().map(|c| format!("{c:?}").chars().take(120).collect::<String>()).collect::<Vec<_>>()); out.clear();
    println!("allowed {:?} progress {:?}", r.write_allowed(), r.progress());
    r.step(Event::Written { entry: Entry { index: 1, kind: 1, payload: Bytes::from_static(b"x") } }, &mut out);
    r.step(Event::Durable { through: 1 }, &mut out);
    println!("after write: {out:?}"); out.clear();
    r.step(Event::View(view(vec![1], 1, vec![1])), &mut out);
    println!("after shrink view: {out:?}"); out.clear();
    r.step(Event::Tick { now_ms: 3100 }, &mut out);
    println!("after tick: {out:?}"); out.clear();
}
