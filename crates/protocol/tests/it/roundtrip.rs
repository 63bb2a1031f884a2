//! Property tests: encoders and parsers agree, and no input makes a parser panic.

use otter_protocol::{
    Answer, Credentials, DeviceAddr, Dialect, Downlink, Offer, Progress, UpKind, UpMessage, Uplink,
    answer, downstream_topics, encode_push, encode_uplink, error_reply, is_own_answer,
    parse_downlink, parse_login, parse_uplink, try_encode_uplink, two_way, upstream_topics, verify,
};
use proptest::prelude::*;
use serde_json::Value;

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![
        Just(Dialect::Tencent),
        Just(Dialect::Aliyun),
        Just(Dialect::Enos)
    ]
}

fn device() -> impl Strategy<Value = DeviceAddr> {
    ("[A-Za-z0-9_.-]{1,16}", "[A-Za-z0-9_.:@-]{1,16}").prop_map(|(p, d)| DeviceAddr::new(p, d))
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn module() -> impl Strategy<Value = String> {
    prop_oneof![Just("default".to_owned()), "[A-Za-z0-9_-]{1,12}"]
}

fn request_id() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        "[0-9]{1,12}".prop_map(|s| Some(Value::String(s))),
        any::<u32>().prop_map(|n| Some(Value::from(n))),
    ]
}

fn percent() -> impl Strategy<Value = Progress> {
    (0u8..=100).prop_map(|percent| Progress::Downloading { percent })
}

/// Progress states the dialect can express.
fn progress(d: Dialect) -> BoxedStrategy<Progress> {
    match d {
        Dialect::Tencent => prop_oneof![
            percent(),
            Just(Progress::Burning),
            Just(Progress::Done),
            (any::<i32>(), text()).prop_map(|(code, message)| Progress::Failed { code, message }),
        ]
        .boxed(),
        _ => prop_oneof![
            percent(),
            (i32::MIN..0, text()).prop_map(|(code, message)| Progress::Failed { code, message }),
        ]
        .boxed(),
    }
}

/// Messages the dialect can express.
fn message(d: Dialect) -> BoxedStrategy<UpMessage> {
    let module = if d == Dialect::Tencent {
        Just("default".to_owned()).boxed()
    } else {
        module().boxed()
    };
    let version = (module.clone(), text())
        .prop_map(|(module, version)| UpMessage::VersionReport { module, version });
    let prog = (module.clone(), proptest::option::of(text()), progress(d)).prop_map(
        |(module, version, progress)| UpMessage::Progress {
            module,
            version,
            progress,
        },
    );
    let request = module.prop_map(|module| UpMessage::FirmwareRequest { module });
    let reply =
        proptest::option::of(any::<i64>()).prop_map(|code| UpMessage::UpgradeReply { code });
    match d {
        Dialect::Tencent => prop_oneof![version, prog].boxed(),
        Dialect::Aliyun => prop_oneof![version, prog, request].boxed(),
        Dialect::Enos => prop_oneof![version, prog, request, reply].boxed(),
    }
}

fn uplink() -> impl Strategy<Value = Uplink> {
    dialect().prop_flat_map(|d| {
        let id = if d == Dialect::Tencent {
            Just(None).boxed()
        } else {
            request_id().boxed()
        };
        // Aliyun firmware requests travel `firmware/get` or the request topic.
        (device(), id, message(d), any::<bool>()).prop_map(
            move |(device, request_id, message, request_topic)| {
                let via = (d == Dialect::Aliyun
                    && request_topic
                    && matches!(message, UpMessage::FirmwareRequest { .. }))
                .then_some(UpKind::ImageRequest);
                Uplink {
                    dialect: d,
                    device,
                    request_id,
                    message,
                    via,
                }
            },
        )
    })
}

fn offer() -> impl Strategy<Value = Offer> {
    (
        module(),
        text(),
        text(),
        0..=i64::MAX as u64,
        "[0-9a-fA-F]{32}",
        "[0-9a-f]{64}",
    )
        .prop_map(|(module, version, url, size, md5, sha256)| Offer {
            module,
            version,
            url,
            size,
            md5,
            sha256,
        })
}

/// What survives a trip through a dialect's push.
fn carried(d: Dialect, o: &Offer) -> Offer {
    Offer {
        module: if d == Dialect::Aliyun {
            o.module.clone()
        } else {
            "default".into()
        },
        md5: o.md5.to_ascii_lowercase(),
        sha256: String::new(),
        ..o.clone()
    }
}

/// JSON built from the field names the parsers look for, to get past the first checks.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "-?[0-9]{1,4}(\\.[0-9])?".prop_map(Value::from),
        prop_oneof![
            Just("report_version"),
            Just("report_progress"),
            Just("update_firmware"),
            Just("report_version_rsp"),
            Just("downloading"),
            Just("fail"),
            Just("ota.device.upgrade"),
            Just("thing.ota.firmware.get"),
        ]
        .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "type",
            "report",
            "progress",
            "state",
            "percent",
            "result_code",
            "result_msg",
            "version",
            "params",
            "step",
            "desc",
            "module",
            "id",
            "method",
            "code",
            "message",
            "data",
            "url",
            "md5sum",
            "file_size",
            "size",
            "sign",
            "signMethod",
            "md5",
            "fileUrl",
            "fileSize",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn topic_for(d: Dialect, dev: &DeviceAddr, pick: usize, down: bool) -> String {
    let topics = if down {
        downstream_topics(d, dev)
    } else {
        upstream_topics(d, dev)
    };
    topics[pick % topics.len()].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn uplink_round_trips(u in uplink()) {
        let out = try_encode_uplink(&u).expect("expressible message");
        prop_assert_eq!(&out, &encode_uplink(&u));
        let back = parse_uplink(&out.topic, &out.payload)
            .map_err(|r| TestCaseError::fail(format!("{}: {}", r.error, String::from_utf8_lossy(&out.payload))))?;
        prop_assert_eq!(back, u);
    }

    #[test]
    fn push_round_trips(d in dialect(), dev in device(), o in offer(), id in any::<u64>()) {
        let out = encode_push(d, &dev, &o, id);
        let (pd, pdev, down) = parse_downlink(&out.topic, &out.payload)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((pd, pdev), (d, dev));
        prop_assert_eq!(down, Downlink::Push(carried(d, &o)));
    }

    #[test]
    fn answers_parse_back_as_downlinks(u in uplink(), o in proptest::option::of(offer())) {
        for a in [Answer::Ack, Answer::Offer(o.clone()), Answer::TaskNotFound, Answer::TaskNotStarted] {
            if let Some(out) = answer(&u, a) {
                let (d, dev, down) = parse_downlink(&out.topic, &out.payload)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!((d, &dev), (u.dialect, &u.device));
                if let Downlink::Reply { id, .. } = down {
                    prop_assert_eq!(Some(id), u.request_id.clone().or(Some(Value::Null)));
                }
            }
        }
    }

    /// On a two-way topic, what Otter sends is recognised as its own answer and never answered,
    /// and what a device sends is never taken for an answer. Without a job, the request topic's
    /// answer holds no "url" (Alibaba's C SDK then ignores it) unless the device's id did.
    #[test]
    fn two_way_topics_never_loop(u in uplink(), o in proptest::option::of(offer())) {
        let req = try_encode_uplink(&u).expect("expressible message");
        prop_assert!(!is_own_answer(&req.topic, &req.payload));
        let no_job = o.is_none();
        let Some(out) = answer(&u, Answer::Offer(o)) else { return Ok(()) };
        if !two_way(&out.topic) {
            return Ok(());
        }
        prop_assert_eq!(&out.topic, &req.topic);
        prop_assert!(is_own_answer(&out.topic, &out.payload));
        let heard = parse_uplink(&out.topic, &out.payload).unwrap_err();
        prop_assert_eq!(error_reply(&heard), None);
        let id_has_url = u.request_id.as_ref().is_some_and(|id| id.to_string().contains("url"));
        if no_job && !id_has_url {
            prop_assert!(!String::from_utf8_lossy(&out.payload).contains("url"));
        }
    }

    #[test]
    fn parse_uplink_never_panics_on_bytes(topic in "\\PC{0,40}", payload in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(r) = parse_uplink(&topic, &payload) {
            let _ = error_reply(&r);
        }
        let _ = parse_downlink(&topic, &payload);
    }

    #[test]
    fn parsers_never_panic_on_json(d in dialect(), dev in device(), pick in any::<usize>(), v in json_value()) {
        let payload = v.to_string().into_bytes();
        let topic = topic_for(d, &dev, pick, false);
        match parse_uplink(&topic, &payload) {
            Ok(u) => {
                for a in [Answer::Ack, Answer::Offer(None), Answer::TaskNotFound] {
                    let _ = answer(&u, a);
                }
            }
            Err(r) => {
                prop_assert!(r.topic.is_some());
                let _ = error_reply(&r);
            }
        }
        let _ = parse_downlink(&topic_for(d, &dev, pick, true), &payload);
    }

    #[test]
    fn auth_never_panics(d in dialect(), dev in device(), client_id in "\\PC{0,60}",
                         username in proptest::option::of("\\PC{0,60}"),
                         password in proptest::option::of(prop::collection::vec(any::<u8>(), 0..80))) {
        let c = Credentials { client_id, username, password };
        let _ = parse_login(&c);
        prop_assert!(verify(d, &dev, "c2VjcmV0", &c).is_err());
    }
}
