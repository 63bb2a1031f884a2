//! `/products/{product}/firmware`: upload (streamed to the blob store, digests computed on the
//! way, signed offline or on the server: docs/signing.md), attach a new signature, and list
//! firmware images with their signatures.

use super::wire;
use super::{ApiError, ApiState};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use otter_api::{
    CampaignView, DeleteFirmwareParams, Deletion, ErrorBody, FirmwareView, SignatureDocument,
    UploadParams, VerifyRequest,
};
use otter_core::campaign::Strategy;
use otter_core::targeting::Selection;
use otter_core::{Module, ProductId, Version};
use otter_engine::campaigns::CampaignRequest;
use otter_engine::signing;
use otter_protocol::{SignatureDoc, SignedRelease};
use otter_store::{CampaignKind, CampaignMode};
use otter_store::{FirmwareSignature, NewFirmware};
use tokio_util::io::StreamReader;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes and their documentation, from the handlers' annotations.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(list, upload))
        .routes(routes!(verify))
        .routes(routes!(attach_signature))
        .routes(routes!(delete))
}

#[utoipa::path(delete, path = "/products/{product}/firmware/{version}", tag = "firmware",
    params(("product" = String, Path), ("version" = String, Path), DeleteFirmwareParams),
    responses((status = 200, description = "deleted; its file removed when no image uses it", body = Deletion),
        (status = 404, body = ErrorBody),
        (status = 409, description = "a live campaign uses it, or finished campaigns do and purge was not asked", body = ErrorBody)))]
pub async fn delete(
    State(s): State<ApiState>,
    Path((product, version)): Path<(String, String)>,
    Query(p): Query<DeleteFirmwareParams>,
) -> Result<Json<Deletion>, ApiError> {
    let product = ProductId::parse(product)?;
    let version = Version::parse(version)?;
    let module = p.module.map(Module::parse).transpose()?.unwrap_or_default();
    let purge = p.purge.unwrap_or(false);
    let removed = s
        .store()
        .await
        .delete_firmware(&product, &module, &version, purge)
        .await?;
    let deleted = format!("firmware {product} {version} (module {module})");
    tracing::info!(%product, %version, %module, campaigns = ?removed.campaigns, "firmware deleted");
    let blobs_removed = collect_blobs(&s, &removed.unreferenced_blobs).await;
    super::audit::record(
        &s,
        "firmware.delete",
        &format!("{product} {version}"),
        serde_json::json!({ "module": module.as_str(), "purge": purge, "campaigns": removed.campaigns, "blobs_removed": blobs_removed }),
    )
    .await;
    Ok(Json(Deletion {
        deleted,
        devices: removed.devices,
        firmware: removed.firmware,
        campaigns: removed.campaigns,
        blobs_removed,
    }))
}

/// Removes the blobs of `shas` that no firmware row references (a delete just removed the last
/// rows that did); returns how many went. Safe against an upload of the same content at the
/// same time, on one node or several: the blob is first withdrawn (moved aside), then the rows
/// are asked again, and it is put back if one names it now; an upload, for its part, checks
/// that its blob is still there after its row is stored (`upload`). Whichever order the steps
/// interleave in, a stored row never ends up without its blob. Failures are logged, never
/// returned: the rows are gone, and a leftover blob is only space.
pub(crate) async fn collect_blobs(s: &ApiState, shas: &[String]) -> u64 {
    let mut removed = 0;
    for sha in shas {
        match collect_blob(s, sha).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(sha256 = %sha, error = %e, "could not remove an unreferenced blob")
            }
        }
    }
    removed
}

async fn collect_blob(s: &ApiState, sha: &str) -> anyhow::Result<bool> {
    if s.store().await.blob_referenced(sha).await? {
        return Ok(false);
    }
    let Some(withdrawn) = s.blobs.withdraw(sha).await? else {
        return Ok(false);
    };
    if s.store().await.blob_referenced(sha).await? {
        s.blobs.restore(withdrawn).await?;
        return Ok(false);
    }
    s.blobs.discard(withdrawn).await?;
    Ok(true)
}

#[utoipa::path(post, path = "/products/{product}/firmware/verify", tag = "firmware", params(("product" = String, Path)), request_body = VerifyRequest,
    responses((status = 201, description = "verification campaign started", body = CampaignView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn verify(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Json(v): Json<VerifyRequest>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    if v.devices.is_empty() || v.devices.len() > otter_engine::campaigns::MAX_TEST_DEVICES {
        return Err(ApiError::BadRequest(format!(
            "verification takes 1 to {} test devices",
            otter_engine::campaigns::MAX_TEST_DEVICES
        )));
    }
    let (subject, tests) = (format!("{product} {}", v.version), v.devices.clone());
    let request = CampaignRequest {
        product,
        version: v.version,
        module: v.module,
        selection: Selection {
            devices: v.devices,
            ..Default::default()
        },
        device_file: None,
        strategy: Strategy {
            timeout_secs: v.timeout_secs,
            ..Default::default()
        },
        mode: CampaignMode::Push,
        dry_run: false,
        supersede: false,
        allow_downgrade: true,
        skip_verification: true,
        rollback_of: None,
    };
    let created = s
        .engine
        .campaigns()
        .create(request, CampaignKind::Verification)
        .await?;
    let id = created.campaign.as_ref().map(|c| c.id).unwrap_or_default();
    super::audit::record(
        &s,
        "firmware.verify",
        &subject,
        serde_json::json!({ "campaign": id, "devices": tests }),
    )
    .await;
    let view = super::campaigns::view(&s, id).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(post, path = "/products/{product}/firmware", tag = "firmware", params(("product" = String, Path), UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the image"),
    responses((status = 201, description = "stored; size, md5 and sha256 computed", body = FirmwareView),
        (status = 400, description = "bad signature", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "version exists", body = ErrorBody), (status = 413, description = "larger than the server takes", body = ErrorBody)))]
pub async fn upload(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Query(p): Query<UploadParams>,
    body: Body,
) -> Result<(StatusCode, Json<FirmwareView>), ApiError> {
    let product = ProductId::parse(product)?;
    let version = Version::parse(p.version.clone())?;
    let module = p
        .module
        .clone()
        .map(Module::parse)
        .transpose()?
        .unwrap_or_default();
    s.store().await.product(&product).await?;
    if s.store()
        .await
        .firmware_by_version(&product, &module, &version)
        .await
        .is_ok()
    {
        return Err(ApiError::Conflict(format!(
            "firmware {product} {version} (module {module}) already exists"
        )));
    }
    let (stream, limit) = super::limits::firmware_upload(body, s.max_firmware_size)?;
    let info = s
        .blobs
        .ingest(StreamReader::new(stream))
        .await
        .map_err(|e| limit.error(e))?;
    if info.size == 0 {
        return Err(ApiError::BadRequest("firmware file is empty".into()));
    }
    let release = SignedRelease {
        product: product.to_string(),
        module: module.to_string(),
        version: version.to_string(),
        size: info.size,
        sha256: info.sha256.clone(),
        issued: 0,
        expires: 0,
        downgrade: p.downgrade.unwrap_or(false),
    };
    let doc = upload_signature(&s, &p, release).await?;
    let firmware = s
        .store()
        .await
        .create_firmware(&NewFirmware {
            product,
            module,
            version,
            size: info.size,
            md5: info.md5,
            sha256: info.sha256,
        })
        .await?;
    // A delete of an image with the same content may have removed the blob between ingest and
    // the row (see `collect_blobs`): now that the row is stored, no collection removes it, so
    // checking once is enough. If it went, the row goes too and the uploader is told to retry.
    if !s.blobs.exists(&firmware.sha256).await.map_err(|e| {
        tracing::error!(error = %e, "blob store check after upload failed");
        ApiError::Storage
    })? {
        if let Err(e) = s
            .store()
            .await
            .delete_firmware(
                &firmware.product,
                &firmware.module,
                &firmware.version,
                false,
            )
            .await
        {
            tracing::error!(error = %e, "could not undo an upload whose blob was removed");
        }
        return Err(ApiError::Conflict(
            "the file was removed by a concurrent delete of the same content; upload it again"
                .into(),
        ));
    }
    let signature = match doc {
        Some(doc) => Some(store_signature(&s, firmware.id, &doc).await?),
        None => None,
    };
    tracing::info!(product = %firmware.product, version = %firmware.version, size = firmware.size, sha256 = %firmware.sha256, "firmware uploaded");
    let subject = format!("{} {}", firmware.product, firmware.version);
    super::audit::record(&s, "firmware.upload", &subject, serde_json::json!({ "module": firmware.module.as_str(), "size": firmware.size, "sha256": firmware.sha256, "key": signature.as_ref().map(|g| &g.key_id) })).await;
    Ok((
        StatusCode::CREATED,
        Json(wire::firmware_view(firmware, signature)),
    ))
}

/// The signature an upload carries (checked against the product's keys), or one made with the
/// server's key of the product, or none.
async fn upload_signature(
    s: &ApiState,
    p: &UploadParams,
    mut release: SignedRelease,
) -> Result<Option<SignatureDoc>, ApiError> {
    let product = ProductId::parse(release.product.clone())?;
    let keys = s.store().await.product_keys(&product).await?;
    let now = signing::now_secs();
    match (&p.sig, &p.key, p.issued, p.expires) {
        (None, None, None, None) => {}
        (Some(sig), Some(key), Some(issued), Some(expires)) => {
            release.issued = issued;
            release.expires = expires;
            let doc = SignatureDoc {
                format: otter_protocol::SIGNED_MESSAGE_TAG.into(),
                release,
                key: key.clone(),
                sig: sig.clone(),
            };
            signing::check_doc(&keys, &doc, now)
                .map_err(|e| ApiError::BadRequest(format!("signature refused: {e}")))?;
            return Ok(Some(doc));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "an offline signature needs sig, key, issued and expires together".into(),
            ));
        }
    }
    let Some(dir) = &s.signing_key_dir else {
        return Ok(None);
    };
    let Some(key) = signing::load_key(dir, &product).map_err(ApiError::Internal)? else {
        return Ok(None);
    };
    let id = otter_protocol::key_id(&key.verifying_key().to_bytes());
    if keys.is_empty() {
        // The product's first key: registering it is what an administrator would do.
        s.store()
            .await
            .add_product_key(&product, &id, &signing::public_base64(&key), None)
            .await?;
        tracing::info!(%product, key = %id, "server signing key registered as the product's first key");
    } else if !keys.iter().any(|k| k.key_id == id) {
        return Err(ApiError::BadRequest(format!(
            "the server's signing key {id} of {product} is not registered; announce it with a registered key (`otter product key add --signed-by`)"
        )));
    }
    release.issued = now;
    release.expires = now.saturating_add(p.expires_in.unwrap_or(signing::DEFAULT_VALIDITY_SECS));
    signing::sign(&key, release)
        .map(Some)
        .map_err(ApiError::BadRequest)
}

async fn store_signature(
    s: &ApiState,
    firmware_id: i64,
    doc: &SignatureDoc,
) -> Result<FirmwareSignature, ApiError> {
    let secs =
        |v: u64| i64::try_from(v).map_err(|_| ApiError::BadRequest("time out of range".into()));
    let signature = FirmwareSignature {
        firmware_id,
        key_id: doc.key.clone(),
        sig: doc.sig.clone(),
        issued: secs(doc.release.issued)?,
        expires: secs(doc.release.expires)?,
        downgrade: doc.release.downgrade,
        signed_at: otter_store::now_ms().into(),
    };
    s.store().await.set_firmware_signature(&signature).await?;
    Ok(signature)
}

#[utoipa::path(post, path = "/products/{product}/firmware/signature", tag = "firmware", params(("product" = String, Path)), request_body = SignatureDocument,
    responses((status = 200, description = "the signature replaced the image's", body = FirmwareView),
        (status = 400, description = "bad signature or not this image", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attach_signature(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Json(doc): Json<SignatureDocument>,
) -> Result<Json<FirmwareView>, ApiError> {
    let doc = wire::signature_doc(doc);
    let product = ProductId::parse(product)?;
    if doc.release.product != product.as_str() {
        return Err(ApiError::BadRequest(format!(
            "the signature is for product {}, not {product}",
            doc.release.product
        )));
    }
    let module = Module::parse(doc.release.module.clone())?;
    let version = Version::parse(doc.release.version.clone())?;
    let firmware = s
        .store()
        .await
        .firmware_by_version(&product, &module, &version)
        .await?;
    if doc.release.size != firmware.size
        || !doc.release.sha256.eq_ignore_ascii_case(&firmware.sha256)
    {
        return Err(ApiError::BadRequest(format!(
            "the signature is for another image (size {}, sha256 {}) than {product} {version} (size {}, sha256 {})",
            doc.release.size, doc.release.sha256, firmware.size, firmware.sha256
        )));
    }
    let keys = s.store().await.product_keys(&product).await?;
    signing::check_doc(&keys, &doc, signing::now_secs())
        .map_err(|e| ApiError::BadRequest(format!("signature refused: {e}")))?;
    let signature = store_signature(&s, firmware.id, &doc).await?;
    let subject = format!("{product} {version}");
    super::audit::record(&s, "firmware.sign", &subject, serde_json::json!({ "key": doc.key, "issued": doc.release.issued, "expires": doc.release.expires, "downgrade": doc.release.downgrade })).await;
    Ok(Json(wire::firmware_view(firmware, Some(signature))))
}

#[utoipa::path(get, path = "/products/{product}/firmware", tag = "firmware", params(("product" = String, Path)),
    responses((status = 200, body = Vec<FirmwareView>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Vec<FirmwareView>>, ApiError> {
    let product = ProductId::parse(product)?;
    s.store().await.product(&product).await?;
    let mut signatures: std::collections::HashMap<i64, FirmwareSignature> = s
        .store()
        .await
        .firmware_signatures(&product)
        .await?
        .into_iter()
        .map(|g| (g.firmware_id, g))
        .collect();
    let list = s.store().await.firmware_list(&product).await?;
    Ok(Json(
        list.into_iter()
            .map(|firmware| {
                let signature = signatures.remove(&firmware.id);
                wire::firmware_view(firmware, signature)
            })
            .collect(),
    ))
}
