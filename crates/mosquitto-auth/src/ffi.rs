//! The few parts of Mosquitto 2.0's plugin API this plugin uses, hand-written from Debian
//! bookworm's `mosquitto-dev` 2.0.11 headers (bindgen would need libclang at build time):
//! `/usr/include/mosquitto_plugin.h`, `/usr/include/mosquitto_broker.h` and, for the error and
//! log constants, `/usr/include/mosquitto.h` (libmosquitto-dev). Field order and types follow
//! the headers exactly; only fields this plugin reads matter, but every field is declared so
//! the layout matches.

use std::ffi::{c_char, c_int, c_void};

/// `MOSQ_PLUGIN_VERSION` (mosquitto_plugin.h).
pub const MOSQ_PLUGIN_VERSION: c_int = 5;

/// `enum mosq_err_t` (mosquitto.h).
pub const MOSQ_ERR_SUCCESS: c_int = 0;
pub const MOSQ_ERR_INVAL: c_int = 3;
pub const MOSQ_ERR_AUTH: c_int = 11;
pub const MOSQ_ERR_ACL_DENIED: c_int = 12;

/// `MOSQ_LOG_*` (mosquitto.h).
pub const MOSQ_LOG_INFO: c_int = 1 << 0;
pub const MOSQ_LOG_WARNING: c_int = 1 << 2;
pub const MOSQ_LOG_ERR: c_int = 1 << 3;

/// `MOSQ_ACL_*` (mosquitto_plugin.h).
pub const MOSQ_ACL_READ: c_int = 0x01;
pub const MOSQ_ACL_WRITE: c_int = 0x02;
pub const MOSQ_ACL_SUBSCRIBE: c_int = 0x04;
pub const MOSQ_ACL_UNSUBSCRIBE: c_int = 0x08;

/// `enum mosquitto_plugin_event` (mosquitto_broker.h).
pub const MOSQ_EVT_ACL_CHECK: c_int = 2;
pub const MOSQ_EVT_BASIC_AUTH: c_int = 3;

/// `struct mosquitto`: opaque.
#[repr(C)]
pub struct Mosquitto {
    _private: [u8; 0],
}

/// `mosquitto_plugin_id_t`: opaque.
#[repr(C)]
pub struct PluginId {
    _private: [u8; 0],
}

/// `struct mosquitto_opt` (mosquitto_plugin.h): one `plugin_opt_<key> <value>` line.
#[repr(C)]
pub struct MosquittoOpt {
    pub key: *mut c_char,
    pub value: *mut c_char,
}

/// `struct mosquitto_evt_basic_auth` (mosquitto_broker.h).
#[repr(C)]
pub struct EvtBasicAuth {
    pub future: *mut c_void,
    pub client: *mut Mosquitto,
    pub username: *mut c_char,
    pub password: *mut c_char,
    pub future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_acl_check` (mosquitto_broker.h).
#[repr(C)]
pub struct EvtAclCheck {
    pub future: *mut c_void,
    pub client: *mut Mosquitto,
    pub topic: *const c_char,
    pub payload: *const c_void,
    /// `mosquitto_property *`.
    pub properties: *mut c_void,
    pub access: c_int,
    pub payloadlen: u32,
    pub qos: u8,
    pub retain: bool,
    pub future2: [*mut c_void; 4],
}

/// `MOSQ_FUNC_generic_callback`: `int (*)(int event, void *event_data, void *userdata)`.
pub type GenericCallback =
    unsafe extern "C" fn(event: c_int, event_data: *mut c_void, userdata: *mut c_void) -> c_int;

// Provided by the mosquitto executable that loads the plugin.
unsafe extern "C" {
    pub fn mosquitto_callback_register(
        identifier: *mut PluginId,
        event: c_int,
        cb_func: GenericCallback,
        event_data: *const c_void,
        userdata: *mut c_void,
    ) -> c_int;
    pub fn mosquitto_callback_unregister(
        identifier: *mut PluginId,
        event: c_int,
        cb_func: GenericCallback,
        event_data: *const c_void,
    ) -> c_int;
    pub fn mosquitto_client_address(client: *const Mosquitto) -> *const c_char;
    pub fn mosquitto_client_id(client: *const Mosquitto) -> *const c_char;
    pub fn mosquitto_client_username(client: *const Mosquitto) -> *const c_char;
    pub fn mosquitto_log_printf(level: c_int, fmt: *const c_char, ...);
}
