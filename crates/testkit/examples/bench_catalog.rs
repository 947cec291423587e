//! Catalog benchmark at ten times Nanhai's first-year scale: 650 departments,
//! 10,830 datasets, 127,060 fields, each department publishing through the
//! real mutual-TLS path with its own node certificate.
//!
//! Prints: load time, search latency p50/p99 over a mix of Chinese and
//! English queries (full gRPC path from an analyst client, and the index
//! alone), the time to publish a 200-dataset manifest, and the resident
//! memory of this process (coordinator plus the load generator).
//!
//! Also the web console's catalog search page over HTTPS with the analyst's
//! certificate (one keep-alive connection, as a browser), against the same
//! searches over gRPC.
//!
//! Run: `cargo run --release -p exchange-testkit --example bench_catalog`

#[path = "support/console_http.rs"]
#[allow(
    dead_code,
    reason = "this benchmark only loads pages; bench_console also posts forms"
)]
mod console_http;

use std::time::{Duration, Instant};

use exchange_catalog::SearchQuery;
use exchange_client::Client;
use exchange_coordinator::registry::CertRecord;
use exchange_coordinator::CoordinatorConfig;
use exchange_pki::{files, Identity, Role};
use exchange_proto::v1 as pb;
use exchange_transport::client::{connect, ClientOptions, ExpectedServer};
use exchange_transport::TlsIdentity;

const DEPARTMENTS: usize = 650;
const DATASETS: usize = 10_830;
const FIELDS: usize = 127_060;

const BUREAUS: &[(&str, &str)] = &[
    ("公安局", "Public Security"),
    ("民政局", "Civil Affairs"),
    ("税务局", "Taxation"),
    ("人社局", "Human Resources"),
    ("市场监管局", "Market Regulation"),
    ("教育局", "Education"),
    ("卫健局", "Health"),
    ("住建局", "Housing"),
    ("交通运输局", "Transport"),
    ("自然资源局", "Natural Resources"),
    ("生态环境局", "Ecology"),
    ("农业农村局", "Agriculture"),
    ("司法局", "Justice"),
    ("财政局", "Finance"),
    ("统计局", "Statistics"),
    ("应急管理局", "Emergency Management"),
    ("医保局", "Medical Insurance"),
    ("退役军人事务局", "Veterans Affairs"),
    ("文广旅体局", "Culture and Tourism"),
    ("水务局", "Water"),
    ("城管局", "Urban Management"),
    ("公积金中心", "Housing Fund"),
    ("供电局", "Electricity"),
    ("燃气公司", "Gas"),
    ("不动产登记中心", "Real Estate Registry"),
    ("车管所", "Vehicle Administration"),
];
const DISTRICTS: &[&str] = &[
    "禅城", "南海", "顺德", "三水", "高明", "桂城", "大良", "容桂", "狮山", "西樵", "九江", "丹灶",
    "里水", "大沥", "北滘", "乐从", "龙江", "杏坛", "勒流", "均安", "陈村", "伦教", "石湾", "张槎",
    "祖庙",
];
const SUBJECTS: &[(&str, &str)] = &[
    ("机动车", "motor vehicle"),
    ("不动产", "real estate"),
    ("纳税人", "taxpayer"),
    ("社会保险", "social insurance"),
    ("企业", "company"),
    ("学籍", "student"),
    ("户籍人口", "resident population"),
    ("出入境", "border crossing"),
    ("用电", "electricity"),
    ("医疗机构", "medical institution"),
    ("婚姻", "marriage"),
    ("低保", "minimum allowance"),
    ("残疾人", "disability"),
    ("公积金", "housing fund"),
    ("药品", "pharmaceutical"),
    ("食品经营", "food business"),
    ("排污", "emission"),
    ("建筑施工", "construction"),
    ("交通违法", "traffic violation"),
    ("供水", "water supply"),
    ("燃气", "gas supply"),
    ("养老服务", "elderly care"),
    ("就业", "employment"),
    ("行政处罚", "administrative penalty"),
];
const KINDS: &[(&str, &str)] = &[
    ("登记信息", "registrations"),
    ("变更记录", "change records"),
    ("年度统计", "annual statistics"),
    ("明细", "details"),
    ("许可证", "licences"),
    ("检查记录", "inspection records"),
    ("申报信息", "declarations"),
    ("缴费记录", "payments"),
];
const FIELD_NAMES: &[(&str, &str, &str)] = &[
    ("person_id", "公民身份号码", "person_id"),
    ("org_code", "统一社会信用代码", "org_code"),
    ("name", "姓名", ""),
    ("address", "地址", ""),
    ("phone", "联系电话", "phone"),
    ("registered_on", "登记日期", ""),
    ("status", "状态", ""),
    ("amount", "金额", ""),
    ("year", "年度", ""),
    ("category", "类别", ""),
    ("plate_no", "号牌号码", "vehicle_plate"),
    ("cert_no", "证书编号", "property_id"),
    ("household_id", "户号", "household_id"),
    ("approver", "审批人", ""),
    ("remarks", "备注", ""),
    ("updated_at", "更新时间", ""),
    ("district", "所属区域", ""),
    ("legal_rep", "法定代表人", ""),
];

fn dataset(dept: usize, n: usize, fields: usize) -> pb::Dataset {
    let (subject, subject_en) = SUBJECTS[(dept * 7 + n * 3) % SUBJECTS.len()];
    let (kind, kind_en) = KINDS[(dept + n * 5) % KINDS.len()];
    let district = DISTRICTS[dept % DISTRICTS.len()];
    pb::Dataset {
        id: format!("ds-{n:03}"),
        title: format!("{district}{subject}{kind}"),
        title_en: format!("{district} {subject_en} {kind_en}"),
        description: format!(
            "{district}区{subject}{kind}，按月更新。Monthly {subject_en} {kind_en} for {district}."
        ),
        update_cycle: "monthly".into(),
        sharing: ["unconditional", "conditional", "conditional", "none"][n % 4].into(),
        basis: if n % 4 == 3 {
            "《政务数据共享管理办法》第十条".into()
        } else {
            String::new()
        },
        fields: (0..fields)
            .map(|f| {
                let (name, desc, key) = FIELD_NAMES[(f + n) % FIELD_NAMES.len()];
                pb::Field {
                    name: format!("{name}_{f}"),
                    r#type: "string".into(),
                    description: format!("{subject}{desc}"),
                    sensitivity: if key.is_empty() {
                        "internal"
                    } else {
                        "sensitive"
                    }
                    .into(),
                    mask: if key.is_empty() { "none" } else { "hash" }.into(),
                    key_type: key.into(),
                }
            })
            .collect(),
        source_kind: "postgres".into(),
        ..Default::default()
    }
}

fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}

async fn node_client(
    state_ca: &exchange_pki::CertificateAuthority,
    registry: &exchange_coordinator::registry::Registry,
    addr: &str,
    id: &str,
) -> anyhow::Result<pb::catalog_client::CatalogClient<exchange_transport::Channel>> {
    let n: usize = id
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    let (bureau, bureau_en) = BUREAUS[n % BUREAUS.len()];
    registry.add_member(
        id,
        &format!("{}{bureau} {bureau_en}", DISTRICTS[n % DISTRICTS.len()]),
    )?;
    let (cert, key) = state_ca.issue_with_new_key(
        &Identity::new(id, Role::Node)?,
        &["127.0.0.1".into()],
        time::Duration::days(1),
    )?;
    registry.record_certificate(
        id,
        CertRecord {
            serial: cert.serial.clone(),
            role: Role::Node,
            issued_unix: 0,
            not_after_unix: cert.not_after.unix_timestamp(),
        },
    )?;
    let tls = TlsIdentity::new(
        state_ca.cert_der().to_vec(),
        cert.der,
        key.private_key_der(),
    )?;
    let channel = connect(
        addr,
        &tls,
        ExpectedServer::Role(Role::Coordinator),
        ClientOptions::default(),
    )
    .await?;
    Ok(pb::catalog_client::CatalogClient::new(channel).max_encoding_message_size(64 << 20))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = CoordinatorConfig {
        data_dir: dir.path().join("coordinator"),
        listen: "127.0.0.1:0".into(),
        enroll_listen: "127.0.0.1:0".into(),
        ..CoordinatorConfig::default()
    };
    exchange_coordinator::init(&config.pki_dir(), &["127.0.0.1".into()])?;
    let mut coordinator = exchange_coordinator::start(&config).await?;
    let console = exchange_console::serve("127.0.0.1:0", &mut coordinator).await?;
    let addr = coordinator.addr.to_string();
    let state = coordinator.state.clone();
    let ca = exchange_pki::CertificateAuthority::from_pem(
        &files::read_text(&config.pki_dir().join("ca.crt"))?,
        &files::read_text(&config.pki_dir().join("ca.key"))?,
    )?;
    let (rss_start, _) = rss_mb();

    // Load: 650 departments publish, each with its own certificate.
    let started = Instant::now();
    let (mut datasets_total, mut fields_total) = (0, 0);
    for dept in 0..DEPARTMENTS {
        let count = DATASETS / DEPARTMENTS + usize::from(dept < DATASETS % DEPARTMENTS);
        let mut client =
            node_client(&ca, &state.registry, &addr, &format!("dept-{dept:03}")).await?;
        let datasets: Vec<pb::Dataset> = (0..count)
            .map(|n| {
                let index = datasets_total + n;
                let fields = FIELDS / DATASETS + usize::from(index < FIELDS % DATASETS);
                dataset(dept, n, fields)
            })
            .collect();
        fields_total += datasets.iter().map(|d| d.fields.len()).sum::<usize>();
        datasets_total += count;
        client
            .publish(pb::PublishRequest {
                datasets,
                digest: format!("v1-{dept}"),
                node_address: String::new(),
            })
            .await?;
    }
    let load = started.elapsed();
    assert_eq!((datasets_total, fields_total), (DATASETS, FIELDS));
    assert_eq!(state.federation.dataset_count(), DATASETS);

    // Search latency through the full path (analyst client, mutual TLS, gRPC).
    let analyst_id = "analyst-dept";
    state.registry.add_member(analyst_id, "analysts")?;
    let (cert, key) = ca.issue_with_new_key(
        &Identity::new(analyst_id, Role::Client)?,
        &[],
        time::Duration::days(1),
    )?;
    state.registry.record_certificate(
        analyst_id,
        CertRecord {
            serial: cert.serial.clone(),
            role: Role::Client,
            issued_unix: 0,
            not_after_unix: cert.not_after.unix_timestamp(),
        },
    )?;
    let analyst_tls = TlsIdentity::new(ca.cert_der().to_vec(), cert.der, key.private_key_der())?;
    let analyst = Client::connect(&addr, &analyst_tls).await?;
    let queries = [
        "机动车",
        "登记",
        "不动产登记信息",
        "纳税人 申报",
        "社会保险",
        "企业 许可证",
        "学籍",
        "出入境",
        "用电 年度统计",
        "低保",
        "公积金 缴费",
        "南海 户籍人口",
        "taxpayer",
        "motor vehicle",
        "real estate registrations",
        "inspection records",
        "person_id",
        "org_code",
        "housing fund payments",
        "顺德 食品经营 检查记录",
    ];
    let mut hits_total = 0usize;
    for q in &queries {
        hits_total += analyst
            .search(pb::SearchRequest {
                text: q.to_string(),
                limit: 20,
                ..Default::default()
            })
            .await?
            .total as usize;
    }
    let rounds = 100;
    let mut grpc = Vec::with_capacity(rounds * queries.len());
    let mut index_only = Vec::with_capacity(rounds * queries.len());
    for _ in 0..rounds {
        for q in &queries {
            let t = Instant::now();
            analyst
                .search(pb::SearchRequest {
                    text: q.to_string(),
                    limit: 20,
                    ..Default::default()
                })
                .await?;
            grpc.push(t.elapsed());
            let t = Instant::now();
            let _ = state.federation.search(&SearchQuery {
                text: q.to_string(),
                limit: 20,
                ..Default::default()
            });
            index_only.push(t.elapsed());
        }
    }
    grpc.sort();
    index_only.sort();

    // The console's catalog page: the same searches, rendered, over HTTPS.
    let mut pages = console_http::Pages::connect(console, &analyst_tls, "bench").await?;
    let mut page_times = Vec::with_capacity(rounds * queries.len());
    for _ in 0..rounds {
        for q in &queries {
            let t = Instant::now();
            let (status, body) = pages
                .get(&format!("/catalog?q={}", console_http::encode(q)))
                .await?;
            page_times.push(t.elapsed());
            anyhow::ensure!(
                status == 200 && body.contains("<table class=\"catalog\">"),
                "catalog page answered {status}: {}",
                body.chars().take(1500).collect::<String>()
            );
        }
    }
    page_times.sort();

    // Publishing a 200-dataset manifest into the loaded catalog.
    let mut big = node_client(&ca, &state.registry, &addr, "big-bureau").await?;
    let mut publish_times = Vec::new();
    for round in 0..5 {
        let datasets: Vec<pb::Dataset> = (0..200).map(|n| dataset(round * 7 + 1, n, 12)).collect();
        let t = Instant::now();
        let r = big
            .publish(pb::PublishRequest {
                datasets,
                digest: format!("big-{round}"),
                node_address: String::new(),
            })
            .await?
            .into_inner();
        publish_times.push(t.elapsed());
        assert!(r.changed && r.datasets == 200);
    }
    publish_times.sort();
    let (rss_end, hwm) = rss_mb();

    println!(
        "catalog benchmark (ten times Nanhai's scale), {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("  loaded            {DEPARTMENTS} departments, {datasets_total} datasets, {fields_total} fields in {:.2} s (each department over its own mutual-TLS connection)", load.as_secs_f64());
    println!("  queries           {} distinct (Chinese and English), {} results in total, {} timed searches", queries.len(), hits_total, grpc.len());
    println!(
        "  search via gRPC   p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   (target: p99 < 10 ms)",
        percentile(&grpc, 0.50).as_secs_f64() * 1e3,
        percentile(&grpc, 0.99).as_secs_f64() * 1e3,
        grpc.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  search, index     p50 {:.3} ms   p99 {:.3} ms",
        percentile(&index_only, 0.50).as_secs_f64() * 1e3,
        percentile(&index_only, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  ratio             gRPC path / index alone: {:.1}x at p50, {:.1}x at p99",
        percentile(&grpc, 0.50).as_secs_f64() / percentile(&index_only, 0.50).as_secs_f64(),
        percentile(&grpc, 0.99).as_secs_f64() / percentile(&index_only, 0.99).as_secs_f64()
    );
    println!(
        "  console page      p50 {:.3} ms   p99 {:.3} ms   (GET /catalog?q=..., HTTPS with a client certificate, 50 hits rendered and the member list for the filter; target: p99 < 100 ms)",
        percentile(&page_times, 0.50).as_secs_f64() * 1e3,
        percentile(&page_times, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  ratio             console page / gRPC search: {:.1}x at p50, {:.1}x at p99",
        percentile(&page_times, 0.50).as_secs_f64() / percentile(&grpc, 0.50).as_secs_f64(),
        percentile(&page_times, 0.99).as_secs_f64() / percentile(&grpc, 0.99).as_secs_f64()
    );
    println!(
        "  publish 200 ds    median {:.1} ms   worst {:.1} ms over {} runs   (target: < 1 s)",
        percentile(&publish_times, 0.5).as_secs_f64() * 1e3,
        publish_times.last().unwrap().as_secs_f64() * 1e3,
        publish_times.len()
    );
    println!("  resident memory   {:.0} MB before load, {:.0} MB after, peak {:.0} MB (coordinator and load generator in one process; target: < 500 MB)", rss_start, rss_end, hwm);
    coordinator.shutdown().await;
    Ok(())
}
