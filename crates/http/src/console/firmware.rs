//! The firmware page: images with their digests and verification state, the upload form (the
//! script streams the file to the API with a progress bar) and verification on test devices.

use super::fleet::product_header;
use super::page::{self, PageResult, Section, badge};
use crate::api::ApiState;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use maud::html;
use otter_core::ProductId;
use otter_store::CampaignKind;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/products/{product}/firmware", get(firmware))
}

async fn firmware(State(s): State<ApiState>, Path(product): Path<String>) -> PageResult {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let mut images = s.store().await.firmware_list(&product.id).await?;
    images.reverse(); // newest first
    let verifications: Vec<_> = s
        .store()
        .await
        .campaigns(Some(&product.id))
        .await?
        .into_iter()
        .filter(|c| c.kind == CampaignKind::Verification)
        .collect();
    let body = html! {
        main {
            (product_header(&product, "Firmware"))
            section.card {
                h2 { "Upload firmware" }
                form #upload data-product=(product.id) {
                    label { "Image file" input type="file" name="file" required; }
                    label { "Version" input type="text" name="version" required placeholder="1.1.0" autocomplete="off"; }
                    label { "Module " span.muted { "(optional)" } input type="text" name="module" placeholder="default" autocomplete="off"; }
                    button type="submit" { "Upload" }
                    div.upload-progress hidden {
                        progress #upload-progress max="100" value="0" aria-label="Upload progress" {}
                        span #upload-percent { "0%" }
                    }
                    p.status role="status" aria-live="polite" {}
                    p.error role="alert" {}
                }
            }
            section {
                h2 { "Images" }
                @if images.is_empty() { p.empty { "No firmware uploaded yet." } }
                @else {
                    table.list #firmware {
                        thead { tr { th { "Version" } th { "Module" } th.num { "Size" } th { "Digests" } th { "State" } th { "Uploaded" } th { "Verify on test devices" } } }
                        tbody {
                            @for fw in &images {
                                @let check = verifications.iter().find(|c| c.firmware_id == fw.id);
                                tr data-version=(fw.version) {
                                    td { strong { (fw.version) } }
                                    td { (fw.module) }
                                    td.num title={ (fw.size) " bytes" } { (page::bytes(fw.size)) }
                                    td.digests {
                                        div { span.muted { "MD5 " } code.md5 { (fw.md5) } }
                                        div { span.muted { "SHA-256 " } code.sha256 { (fw.sha256) } }
                                    }
                                    td.state {
                                        (badge(fw.state.as_str()))
                                        @if let Some(c) = check {
                                            br; a href={ "/campaigns/" (c.id) } { "check #" (c.id) } " " span.muted { (c.state.as_str()) }
                                        }
                                    }
                                    td.when { (page::time(fw.created_at)) }
                                    td {
                                        form.verify data-product=(product.id) data-version=(fw.version) data-module=(fw.module) {
                                            label.sr-only for={ "verify-" (fw.id) } { "Test devices for " (fw.version) }
                                            input id={ "verify-" (fw.id) } type="text" name="devices" required placeholder="dev1, dev2" autocomplete="off";
                                            button type="submit" { "Verify" }
                                            p.status role="status" aria-live="polite" {}
                                            p.error role="alert" {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                    p.muted { "Only a verified image goes to a rollout (unless the campaign skips verification): verification upgrades 1–10 test devices and marks the image verified when all succeed, rejected when any fails." }
                }
            }
        }
    };
    Ok(page::document(
        &format!("Firmware of {}", product.id),
        Some(Section::Products),
        body,
    ))
}
