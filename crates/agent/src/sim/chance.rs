//! Deterministic randomness for the simulator: which upgrades hit an injected fault and how
//! much reconnect jitter a device adds. A tiny SplitMix64 per device, seeded from the fleet's
//! seed and the device's address, so a demo run repeats exactly and no dependency is needed.

use otter_protocol::{DeviceAddr, FailureKind};

use super::{Behavior, Faults, FaultyRelease, Sickness};

/// What an upgrade will do, decided when the offer arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    Succeed,
    Fail(FailureKind),
    /// The connection drops in the middle of the download.
    Drop,
}

/// Failures drawn for `failure_rate`: the ones a real device hits most.
const RANDOM_FAILURES: [FailureKind; 3] = [
    FailureKind::DownloadTimeout,
    FailureKind::DownloadFailed,
    FailureKind::InstallFailed,
];

/// A per-device random source.
#[derive(Clone, Debug)]
pub(super) struct Chance(u64);

impl Chance {
    pub fn new(seed: u64, addr: &DeviceAddr) -> Self {
        // FNV-1a of the address, mixed into the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in addr
            .product
            .bytes()
            .chain([b'/'])
            .chain(addr.device.bytes())
        {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Chance(seed ^ h)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn hit(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.unit() < rate
    }

    /// The device's sickness on a faulty release, drawn once from its own stream (so the
    /// plans drawn per offer stay what they were without one).
    pub fn sickness(seed: u64, addr: &DeviceAddr, faulty: Option<&FaultyRelease>) -> Sickness {
        let Some(f) = faulty else {
            return Sickness::Fine;
        };
        let u = Chance::new(seed ^ 0x005e_ed0f_51c4, addr).unit();
        let mut edge = 0.0;
        for (share, sickness) in [
            (f.boot_loop, Sickness::BootLoop),
            (f.never_back, Sickness::NeverBack),
            (f.back_on_old, Sickness::BackOnOld),
            (f.crashes, Sickness::Crashes),
        ] {
            edge += share;
            if u < edge {
                return sickness;
            }
        }
        Sickness::Fine
    }

    /// The plan for an offer; `None` for a device that ignores offers. Faults only touch
    /// devices meant to succeed, so the `Fail*` behaviours stay exact for tests.
    pub fn plan(&mut self, behavior: Behavior, faults: &Faults) -> Option<Plan> {
        let plan = match behavior {
            Behavior::Ignore => return None,
            Behavior::FailDownload => Plan::Fail(FailureKind::DownloadFailed),
            Behavior::FailVerify => Plan::Fail(FailureKind::DigestMismatch),
            Behavior::FailInstall => Plan::Fail(FailureKind::InstallFailed),
            Behavior::Succeed if self.hit(faults.drop_connection_rate) => Plan::Drop,
            Behavior::Succeed if self.hit(faults.corrupt_rate) => {
                Plan::Fail(FailureKind::DigestMismatch)
            }
            Behavior::Succeed if self.hit(faults.failure_rate) => {
                let i = (self.next_u64() % RANDOM_FAILURES.len() as u64) as usize;
                Plan::Fail(
                    RANDOM_FAILURES
                        .get(i)
                        .copied()
                        .unwrap_or(FailureKind::Other),
                )
            }
            Behavior::Succeed => Plan::Succeed,
        };
        Some(plan)
    }

    /// Whether this offer's download is slow (fault injection, Succeed devices only).
    pub fn slow(&mut self, behavior: Behavior, faults: &Faults) -> bool {
        behavior == Behavior::Succeed && self.hit(faults.slow_rate)
    }

    /// The spread of a reconnect pause (`crate::backoff`), in `0.0..1.0`, so a fleet does not
    /// reconnect in lockstep.
    pub fn spread(&mut self) -> f64 {
        self.unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(failure: f64, drop: f64, corrupt: f64) -> Faults {
        Faults {
            failure_rate: failure,
            drop_connection_rate: drop,
            corrupt_rate: corrupt,
            slow_rate: 0.0,
            seed: 42,
        }
    }

    fn plans(f: &Faults, n: usize) -> Vec<Plan> {
        let mut c = Chance::new(f.seed, &DeviceAddr::new("P", "d"));
        (0..n)
            .filter_map(|_| c.plan(Behavior::Succeed, f))
            .collect()
    }

    #[test]
    fn no_faults_always_succeed() {
        assert!(
            plans(&Faults::default(), 100)
                .iter()
                .all(|p| *p == Plan::Succeed)
        );
    }

    #[test]
    fn certain_faults_always_happen() {
        assert!(
            plans(&faults(0.0, 1.0, 0.0), 50)
                .iter()
                .all(|p| *p == Plan::Drop)
        );
        let corrupt = plans(&faults(0.0, 0.0, 1.0), 50);
        assert!(
            corrupt
                .iter()
                .all(|p| *p == Plan::Fail(FailureKind::DigestMismatch))
        );
        let failed = plans(&faults(1.0, 0.0, 0.0), 200);
        for kind in RANDOM_FAILURES {
            assert!(failed.contains(&Plan::Fail(kind)), "{kind:?} never drawn");
        }
    }

    #[test]
    fn same_seed_same_plans_and_rates_roughly_hold() {
        let f = faults(0.2, 0.1, 0.1);
        let a = plans(&f, 2000);
        assert_eq!(a, plans(&f, 2000));
        let ok = a.iter().filter(|p| **p == Plan::Succeed).count();
        // 0.9 * 0.9 * 0.8 = 0.648 of 2000.
        assert!((1150..1450).contains(&ok), "{ok}");
        let other = plans(&faults(0.2, 0.1, 0.1), 2000);
        let mut c = Chance::new(43, &DeviceAddr::new("P", "d"));
        let shifted: Vec<Plan> = (0..2000)
            .filter_map(|_| c.plan(Behavior::Succeed, &f))
            .collect();
        assert_eq!(a, other);
        assert_ne!(a, shifted, "another seed draws differently");
    }

    #[test]
    fn fixed_behaviours_ignore_faults() {
        let f = faults(1.0, 1.0, 1.0);
        let mut c = Chance::new(1, &DeviceAddr::new("P", "d"));
        assert_eq!(c.plan(Behavior::Ignore, &f), None);
        assert_eq!(
            c.plan(Behavior::FailInstall, &f),
            Some(Plan::Fail(FailureKind::InstallFailed))
        );
    }

    #[test]
    fn spread_is_a_unit_draw() {
        let mut c = Chance::new(1, &DeviceAddr::new("P", "d"));
        for _ in 0..100 {
            let s = c.spread();
            assert!((0.0..1.0).contains(&s));
        }
    }

    #[test]
    fn slow_downloads_only_touch_succeeding_devices() {
        let mut slow = faults(0.0, 0.0, 0.0);
        slow.slow_rate = 1.0;
        let mut c = Chance::new(7, &DeviceAddr::new("P", "d"));
        assert!(c.slow(Behavior::Succeed, &slow));
        assert!(!c.slow(Behavior::FailInstall, &slow));
        assert!(!c.slow(Behavior::Succeed, &faults(0.0, 0.0, 0.0)));
    }
}
