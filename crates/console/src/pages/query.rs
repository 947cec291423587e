//! Running a query on a granted dataset: choose fields, a filter and a
//! limit, preview the first rows, and download the whole answer as CSV or
//! Parquet, streamed batch by batch (never held whole in memory).

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use exchange_proto::v1 as pb;
use futures::StreamExt;
use maud::{html, Markup};

use super::{batches_table, Reply};
use crate::web::{Form, Session};

/// Rows shown in a preview.
const PREVIEW_ROWS: u64 = 20;

async fn active_grant(s: &Session, dataset: &str) -> Result<pb::Grant, Response> {
    let grants = s.client().grants().await.map_err(|e| s.client_error(&e))?;
    grants
        .into_iter()
        .find(|g| g.dataset == dataset && g.consumer == s.member() && g.status == "active")
        .ok_or_else(|| {
            s.error(
                StatusCode::FORBIDDEN,
                s.t("本部门没有此数据集的有效授权：请先在数据集页面申请。", "your department holds no active grant on this dataset: request access from its page first"),
            )
        })
}

fn query_form(s: &Session, grant: &pb::Grant, form: Option<&Form>) -> Markup {
    let chosen = form.map(|f| f.all("fields")).unwrap_or_default();
    let value = |name: &str| form.map(|f| f.get(name).to_string()).unwrap_or_default();
    let action = format!("/query/{}", grant.dataset);
    html! {
        form.query method="post" action=(action) {
            (s.csrf_field())
            fieldset {
                legend { (s.t("字段（不选 = 全部授权字段）", "Fields (none ticked: every granted field)")) }
                @for f in &grant.fields {
                    label.check { input type="checkbox" name="fields" value=(f.name) checked[chosen.contains(&f.name)]; " " (f.name) " (" (f.mask) ")" }
                }
            }
            label { (s.t("过滤条件", "Filter")) input name="where" maxlength="10000" value=(value("where")) placeholder="district = '南海' AND year >= 2020"; }
            label { (s.t("行数上限", "Limit")) input type="number" name="limit" min="1" max="100000000" value=(value("limit")); }
            label { (s.t("用途", "Purpose")) input name="purpose" required maxlength="200" value=(value("purpose")); }
            div.buttons {
                button type="submit" { (s.t("预览前 20 行", "Preview first 20 rows")) }
                button type="submit" formaction=(format!("{action}/download?format=csv")) { (s.t("下载 CSV", "Download CSV")) }
                button type="submit" formaction=(format!("{action}/download?format=parquet")) { (s.t("下载 Parquet", "Download Parquet")) }
            }
        }
    }
}

pub async fn form(s: Session, Path((dept, local)): Path<(String, String)>) -> Reply {
    let grant = active_grant(&s, &format!("{dept}/{local}")).await?;
    let body = html! {
        h1 { (s.t("查询", "Query")) " " (grant.dataset) }
        p { (s.t("授权", "Grant")) " " (grant.id) " · " (s.t("截止", "until")) " " (grant.until) @if !grant.row_filter.is_empty() { " · " (s.t("行过滤", "row filter")) ": " (grant.row_filter) } }
        (query_form(&s, &grant, None))
    };
    Ok(s.page(s.t("查询", "Query"), body))
}

fn command(
    s: &Session,
    dataset: String,
    form: &Form,
    limit_cap: Option<u64>,
) -> Result<exchange_query::QueryCommand, Response> {
    let limit = match form.get("limit").trim() {
        "" => None,
        text => Some(text.parse::<u64>().map_err(|_| {
            s.error(
                StatusCode::BAD_REQUEST,
                s.t(
                    "行数上限须为正整数。",
                    "the limit must be a whole number of rows",
                ),
            )
        })?),
    };
    let limit = match (limit, limit_cap) {
        (Some(l), Some(cap)) => Some(l.min(cap)),
        (None, cap) => cap,
        (l, None) => l,
    };
    Ok(exchange_query::QueryCommand {
        dataset,
        fields: form.all("fields"),
        filter: form.get("where").to_string(),
        purpose: form.get("purpose").to_string(),
        user: String::new(),
        limit,
    })
}

pub async fn preview(s: Session, Path((dept, local)): Path<(String, String)>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let dataset = format!("{dept}/{local}");
    let grant = active_grant(&s, &dataset).await?;
    let cmd = command(&s, dataset, &form, Some(PREVIEW_ROWS))?;
    let mut stream = s
        .client()
        .query(cmd)
        .await
        .map_err(|e| s.client_error(&e))?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.map_err(|e| {
            s.error(
                StatusCode::BAD_GATEWAY,
                &exchange_client::flight_error_text(&e),
            )
        })?);
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let body = html! {
        h1 { (s.t("查询", "Query")) " " (grant.dataset) }
        (query_form(&s, &grant, Some(&form)))
        h2 { (s.t("预览", "Preview")) " · " (rows) " " (s.t("行", "rows")) }
        (batches_table(&batches, PREVIEW_ROWS as usize))
    };
    Ok(s.page(s.t("查询预览", "Query preview"), body))
}

#[derive(Debug, serde::Deserialize)]
pub struct Format {
    format: String,
}

pub async fn download(
    s: Session,
    Path((dept, local)): Path<(String, String)>,
    axum::extract::Query(format): axum::extract::Query<Format>,
    form: Form,
) -> Reply {
    s.check_csrf(&form)?;
    let parquet = match format.format.as_str() {
        "csv" => false,
        "parquet" => true,
        _ => {
            return Err(s.error(
                StatusCode::BAD_REQUEST,
                s.t(
                    "格式只能是 csv 或 parquet。",
                    "the format is csv or parquet",
                ),
            ))
        }
    };
    let dataset = format!("{dept}/{local}");
    let cmd = command(&s, dataset.clone(), &form, None)?;
    let mut stream = s
        .client()
        .query(cmd)
        .await
        .map_err(|e| s.client_error(&e))?;
    // The first batch, or the refusal, before the answer starts: an error
    // still gets a page rather than a broken download. An answer without
    // rows is still a file with its columns (a CSV header, a Parquet schema).
    let first = match stream.next().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(e)) => {
            return Err(s.error(
                StatusCode::BAD_GATEWAY,
                &exchange_client::flight_error_text(&e),
            ))
        }
        None => stream
            .schema()
            .map(|schema| arrow_array::RecordBatch::new_empty(schema.clone())),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut sink = if parquet {
            Sink::parquet()
        } else {
            Sink::Csv { header: true }
        };
        let batches = futures::stream::iter(first.map(Ok)).chain(stream);
        futures::pin_mut!(batches);
        while let Some(batch) = batches.next().await {
            let bytes = batch
                .map_err(|e| std::io::Error::other(exchange_client::flight_error_text(&e)))
                .and_then(|b| sink.write(&b));
            let failed = bytes.is_err();
            if tx.send(bytes).await.is_err() || failed {
                return;
            }
        }
        let _ = tx.send(sink.finish()).await;
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let name = dataset.replace('/', "-");
    let (kind, ext) = if parquet {
        ("application/vnd.apache.parquet", "parquet")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Turns batches into the bytes of a download, one batch at a time.
enum Sink {
    Csv { header: bool },
    Parquet(Option<Box<parquet::arrow::ArrowWriter<Vec<u8>>>>),
}

/// A Parquet row group is closed once this much is buffered.
const ROW_GROUP_BYTES: usize = 16 << 20;

impl Sink {
    fn parquet() -> Sink {
        Sink::Parquet(None)
    }

    fn write(&mut self, batch: &arrow_array::RecordBatch) -> std::io::Result<Bytes> {
        match self {
            Sink::Csv { header } => csv_bytes(batch, std::mem::take(header)),
            Sink::Parquet(writer) => {
                if writer.is_none() {
                    let props = parquet::file::properties::WriterProperties::builder()
                        .set_compression(parquet::basic::Compression::SNAPPY)
                        .build();
                    let created = parquet::arrow::ArrowWriter::try_new(
                        Vec::new(),
                        batch.schema(),
                        Some(props),
                    )
                    .map_err(std::io::Error::other)?;
                    *writer = Some(Box::new(created));
                }
                let w = writer.as_mut().expect("created above");
                w.write(batch).map_err(std::io::Error::other)?;
                if w.in_progress_size() > ROW_GROUP_BYTES {
                    w.flush().map_err(std::io::Error::other)?;
                }
                Ok(Bytes::from(std::mem::take(w.inner_mut())))
            }
        }
    }

    fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Sink::Csv { .. } => Ok(Bytes::new()),
            Sink::Parquet(None) => Ok(Bytes::new()),
            Sink::Parquet(Some(mut w)) => {
                w.finish().map_err(std::io::Error::other)?;
                Ok(Bytes::from(std::mem::take(w.inner_mut())))
            }
        }
    }
}

/// A batch as CSV lines (with the header line first when asked), hidden
/// characters spelled out as on the command line.
fn csv_bytes(batch: &arrow_array::RecordBatch, header: bool) -> std::io::Result<Bytes> {
    let mut out = csv::Writer::from_writer(Vec::new());
    if header {
        out.write_record(batch.schema().fields().iter().map(|f| f.name().as_str()))?;
    }
    let columns: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| exchange_client::values::cells(c.as_ref()))
        .collect();
    for i in 0..batch.num_rows() {
        out.write_record(columns.iter().map(|c| {
            c.get(i)
                .map(|v| crate::web::csv_cell(&v))
                .unwrap_or_default()
        }))?;
    }
    out.into_inner()
        .map(Bytes::from)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
