//! Authentication vectors from PROTOCOL.md and independently computed ones (openssl).

use super::*;

const PK: &str = "a1B2c3D4e5F";
const DN: &str = "device01";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const TS: &str = "1617773607348";

fn dev() -> DeviceAddr {
    DeviceAddr::new(PK, DN)
}

fn creds(client_id: &str, username: &str, password: &str) -> Credentials {
    Credentials {
        client_id: client_id.to_owned(),
        username: Some(username.to_owned()),
        password: Some(password.as_bytes().to_vec()),
    }
}

fn aliyun(id: &str, method: &str, extra: &str, password: &str) -> Credentials {
    creds(
        &format!("{id}|securemode=3,signmethod={method},timestamp={TS}{extra}|"),
        &format!("{DN}&{PK}"),
        password,
    )
}

#[test]
fn aliyun_protocol_vectors() {
    let id = "a1B2c3D4e5F&device01";
    for (method, pw) in [
        ("hmacsha1", "fc5fa061f61c18318b08dff981cbddcc6a9ffd9a"),
        (
            "hmacsha256",
            "2dd1c0bffb8864a1e3b038e05f26c36b99e6f98b9124b03a4f69b3d293a65c2d",
        ),
        ("hmacmd5", "9244692325e4dacbd1ffbf71a72c34d7"),
    ] {
        let c = aliyun(id, method, "", pw);
        assert_eq!(
            verify(Dialect::Aliyun, &dev(), SECRET, &c),
            Ok(()),
            "{method}"
        );
        let upper = aliyun(id, method, "", &pw.to_ascii_uppercase());
        assert_eq!(
            verify(Dialect::Aliyun, &dev(), SECRET, &upper),
            Ok(()),
            "{method} upper"
        );
        let wrong = verify(
            Dialect::Aliyun,
            &dev(),
            "0123456789abcdef0123456789abcdee",
            &c,
        );
        assert_eq!(wrong, Err(AuthError::BadSignature), "{method} wrong secret");
    }
}

#[test]
fn aliyun_extra_params_in_any_order() {
    let c = creds(
        "a1B2c3D4e5F&device01|timestamp=1617773607348, signmethod=hmacsha1,securemode=3,ext=1|",
        "device01&a1B2c3D4e5F",
        "fc5fa061f61c18318b08dff981cbddcc6a9ffd9a",
    );
    assert_eq!(verify(Dialect::Aliyun, &dev(), SECRET, &c), Ok(()));
}

#[test]
fn aliyun_region_vectors() {
    let id = "6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
    let plain = aliyun(
        id,
        "hmacsha1",
        "",
        "93919ABFA4223D955D92E98DA0F50BDE3B9D58BD",
    );
    assert_eq!(verify(Dialect::Aliyun, &dev(), SECRET, &plain), Ok(()));
    let region = aliyun(
        id,
        "hmacsha1",
        "",
        "270AE5E62B12D295FD6D717EF887FFC1A75B76EF",
    );
    assert_eq!(verify(Dialect::Aliyun, &dev(), SECRET, &region), Ok(()));
    // Only the configured regions are tried.
    let only_beijing =
        verify_with_regions(Dialect::Aliyun, &dev(), SECRET, &region, &["cn-beijing"]);
    assert_eq!(only_beijing, Err(AuthError::BadSignature));
    let none = verify_with_regions(Dialect::Aliyun, &dev(), SECRET, &plain, &[]);
    assert_eq!(none, Ok(()));
    assert!(DEFAULT_REGIONS.contains(&"cn-shanghai"));
}

#[test]
fn aliyun_sha1_fallback_for_sha256_and_md5() {
    let sha1 = "fc5fa061f61c18318b08dff981cbddcc6a9ffd9a";
    for method in ["hmacsha256", "hmacmd5", "HmacSHA256"] {
        let c = aliyun("a1B2c3D4e5F&device01", method, "", sha1);
        assert_eq!(
            verify(Dialect::Aliyun, &dev(), SECRET, &c),
            Ok(()),
            "{method}"
        );
    }
}

#[test]
fn aliyun_without_timestamp() {
    // openssl: printf 'clientIdxdeviceNamedevice01productKeya1B2c3D4e5F' |
    //   openssl dgst -sha1 -hmac 0123456789abcdef0123456789abcdef
    let c = creds(
        "x|securemode=3,signmethod=hmacsha1|",
        "device01&a1B2c3D4e5F",
        ALIYUN_NO_TS,
    );
    assert_eq!(verify(Dialect::Aliyun, &dev(), SECRET, &c), Ok(()));
}
const ALIYUN_NO_TS: &str = "d5e992c80059cb6c37ee7f3057d14952be18f172";

#[test]
fn aliyun_refusals() {
    let good = "fc5fa061f61c18318b08dff981cbddcc6a9ffd9a";
    let mut c = aliyun("a1B2c3D4e5F&device01", "hmacsha1", "", good);
    let other = DeviceAddr::new(PK, "device02");
    assert!(matches!(
        verify(Dialect::Aliyun, &other, SECRET, &c),
        Err(AuthError::WrongDevice { .. })
    ));
    c.client_id = "a1B2c3D4e5F&device01".into();
    assert!(matches!(
        verify(Dialect::Aliyun, &dev(), SECRET, &c),
        Err(AuthError::BadClientId(_))
    ));
    let c = aliyun("a1B2c3D4e5F&device01", "hmacsha512", "", good);
    assert!(matches!(
        verify(Dialect::Aliyun, &dev(), SECRET, &c),
        Err(AuthError::UnsupportedSignMethod(_))
    ));
    let mut c = aliyun("a1B2c3D4e5F&device01", "hmacsha1", "", good);
    c.password = None;
    assert_eq!(
        verify(Dialect::Aliyun, &dev(), SECRET, &c),
        Err(AuthError::MissingPassword)
    );
    c.password = Some(vec![0xff, 0xfe]);
    assert_eq!(
        verify(Dialect::Aliyun, &dev(), SECRET, &c),
        Err(AuthError::BadPassword)
    );
    c.username = None;
    assert_eq!(
        verify(Dialect::Aliyun, &dev(), SECRET, &c),
        Err(AuthError::MissingUsername)
    );
}

#[test]
fn tencent_vector() {
    // openssl: printf '%s' "$USER" | openssl dgst -sha1 -mac HMAC -macopt hexkey:<decoded secret>
    let dev = DeviceAddr::new("ABCDEFGHIJ", "dev1");
    let user = "ABCDEFGHIJdev1;21010406;a1b2c;9223372036854775807";
    let c = creds("ABCDEFGHIJdev1", user, &format!("{TENCENT_SHA1};hmacsha1"));
    assert_eq!(verify(Dialect::Tencent, &dev, TENCENT_SECRET, &c), Ok(()));
    let c = creds(
        "ABCDEFGHIJdev1",
        user,
        &format!("{TENCENT_SHA256};hmacsha256"),
    );
    assert_eq!(verify(Dialect::Tencent, &dev, TENCENT_SECRET, &c), Ok(()));
    let upper = creds(
        "ABCDEFGHIJdev1",
        user,
        &format!("{};hmacsha256", TENCENT_SHA256.to_ascii_uppercase()),
    );
    assert_eq!(
        verify(Dialect::Tencent, &dev, TENCENT_SECRET, &upper),
        Ok(())
    );
    // The suffix picks the hash: a SHA-1 MAC labelled sha256 is refused.
    let c = creds(
        "ABCDEFGHIJdev1",
        user,
        &format!("{TENCENT_SHA1};hmacsha256"),
    );
    assert_eq!(
        verify(Dialect::Tencent, &dev, TENCENT_SECRET, &c),
        Err(AuthError::BadSignature)
    );
}
const TENCENT_SECRET: &str = "dGVuY2VudC1zZWNyZXQtMTY=";
const TENCENT_SHA1: &str = "31b25e7728845ea8a2560f662cfe7c5b21069142";
const TENCENT_SHA256: &str = "7314fbdc8a43ceb904161de4c34d4f6242d23475176a673dd7f3a02df548d673";

#[test]
fn tencent_identity_checks() {
    let dev = DeviceAddr::new("ABCDEFGHIJ", "dev1");
    let good = sign(Dialect::Tencent, &dev, TENCENT_SECRET, 1_700_000_000_000);
    assert_eq!(good.client_id, "ABCDEFGHIJdev1");
    assert_eq!(
        verify(Dialect::Tencent, &dev, TENCENT_SECRET, &good),
        Ok(())
    );
    // Client id of another device, with a username to match.
    let other = DeviceAddr::new("ABCDEFGHIJ", "dev2");
    assert!(matches!(
        verify(Dialect::Tencent, &other, TENCENT_SECRET, &good),
        Err(AuthError::WrongDevice { .. })
    ));
    let mut bad = good.clone();
    bad.username = Some("ABCDEFGHIJdev2;21010406;abcde;0".into());
    assert!(matches!(
        verify(Dialect::Tencent, &dev, TENCENT_SECRET, &bad),
        Err(AuthError::WrongDevice { .. })
    ));
    let mut expiry_ms = good.clone();
    // Python SDK: the 4th field is a time in milliseconds; it is not checked.
    expiry_ms.username = Some("ABCDEFGHIJdev1;21010406;abcde;1700000000000".into());
    assert_eq!(
        verify(Dialect::Tencent, &dev, TENCENT_SECRET, &expiry_ms),
        Err(AuthError::BadSignature),
        "username is signed, so changing it breaks the MAC"
    );
    // TLS-PSK devices send no password: not verifiable here.
    let mut psk = good;
    psk.password = None;
    assert_eq!(
        verify(Dialect::Tencent, &dev, TENCENT_SECRET, &psk),
        Err(AuthError::MissingPassword)
    );
}

#[test]
fn enos_vector() {
    // printf 'clientIdcid-1deviceKeydk1productKeypk1timestamp1795329573246.5452SECRET' | sha256sum
    let dev = DeviceAddr::new("pk1", "dk1");
    let cid = "cid-1|securemode=2,signmethod=hmacsha256,timestamp=1795329573246.5452|";
    let c = creds(cid, "dk1&pk1", ENOS_SHA256);
    assert_eq!(verify(Dialect::Enos, &dev, ENOS_SECRET, &c), Ok(()));
    let c = creds(cid, "dk1&pk1", &ENOS_SHA256.to_ascii_uppercase());
    assert_eq!(verify(Dialect::Enos, &dev, ENOS_SECRET, &c), Ok(()));
    let docs = "cid-1|securemode=2,signmethod=sha256,timestamp=1795329573246.5452|";
    let c = creds(docs, "dk1&pk1", &ENOS_SHA256.to_ascii_uppercase());
    assert_eq!(verify(Dialect::Enos, &dev, ENOS_SECRET, &c), Ok(()));
    let sha1 = "cid-1|securemode=2,signmethod=hmacsha1,timestamp=1795329573246.5452|";
    let c = creds(sha1, "dk1&pk1", &ENOS_SHA1.to_ascii_uppercase());
    assert_eq!(verify(Dialect::Enos, &dev, ENOS_SECRET, &c), Ok(()));
    let md5 = "cid-1|securemode=2,signmethod=hmacmd5,timestamp=1795329573246.5452|";
    let c = creds(md5, "dk1&pk1", ENOS_MD5);
    assert_eq!(verify(Dialect::Enos, &dev, ENOS_SECRET, &c), Ok(()));
    let c = creds(cid, "dk1&pk1", ENOS_SHA256);
    assert_eq!(
        verify(Dialect::Enos, &dev, "other", &c),
        Err(AuthError::BadSignature)
    );
    let mode3 = "cid-1|securemode=3,signmethod=hmacsha256,timestamp=1|";
    let c = creds(mode3, "dk1&pk1", ENOS_SHA256);
    assert!(matches!(
        verify(Dialect::Enos, &dev, ENOS_SECRET, &c),
        Err(AuthError::UnsupportedSecureMode(_))
    ));
}
const ENOS_SECRET: &str = "SECRET";
const ENOS_SHA256: &str = "58ccf8e96d854fbe55cc07d93a82db0224ad51ac127efbb6ed12495a87e94366";
const ENOS_SHA1: &str = "cfdb8efd47af482b320884f8fdaebd951de7a199";
const ENOS_MD5: &str = "de00571742e58b96371235b8464a74d7";

#[test]
fn sign_then_verify_every_dialect() {
    for d in Dialect::ALL {
        let dev = DeviceAddr::new("prodA", "devB");
        let secret = generate_secret_format(d, &[7u8; 16]);
        let c = sign(d, &dev, &secret, 1_617_773_607_348);
        assert_eq!(verify(d, &dev, &secret, &c), Ok(()), "{d}");
        let other = generate_secret_format(d, &[8u8; 16]);
        assert_eq!(
            verify(d, &dev, &other, &c),
            Err(AuthError::BadSignature),
            "{d}"
        );
        let login = parse_login(&c).unwrap();
        match d {
            Dialect::Tencent => assert_eq!(
                login,
                Login::Tencent {
                    client_id: "prodAdevB".into()
                }
            ),
            _ => assert_eq!(
                login,
                Login::Keyed {
                    product: "prodA".into(),
                    device: "devB".into()
                }
            ),
        }
    }
}

#[test]
fn secret_formats() {
    let bytes: Vec<u8> = (0u8..16).collect();
    assert_eq!(
        generate_secret_format(Dialect::Tencent, &bytes),
        "AAECAwQFBgcICQoLDA0ODw=="
    );
    assert_eq!(
        generate_secret_format(Dialect::Aliyun, &bytes),
        "000102030405060708090a0b0c0d0e0f"
    );
    let long: Vec<u8> = (0u8..32).collect();
    assert_eq!(generate_secret_format(Dialect::Enos, &long).len(), 32);
}

#[test]
fn parse_login_shapes() {
    let c = creds("pkdn", "pkdn;21010406;abcde;9223372036854775807", "x");
    assert_eq!(
        parse_login(&c),
        Ok(Login::Tencent {
            client_id: "pkdn".into()
        })
    );
    let c = creds("other", "pkdn;21010406;abcde;1", "x");
    assert!(matches!(
        parse_login(&c),
        Err(AuthError::WrongDevice { .. })
    ));
    let c = creds("x|securemode=3|", "dn&pk", "x");
    assert_eq!(
        parse_login(&c),
        Ok(Login::Keyed {
            product: "pk".into(),
            device: "dn".into()
        })
    );
    for bad in ["", "dn", "&pk", "dn&", "a&b&c"] {
        let c = creds("x", bad, "x");
        assert!(
            matches!(parse_login(&c), Err(AuthError::BadUsername(_))),
            "{bad:?}"
        );
    }
}
