//! The generator: an in-memory model of persons, households and companies,
//! then one SQLite database per department.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use crate::ids::{resident_id, uscc};
use crate::rng::Rng;
use crate::DemoError;

/// The demo departments: member id and display name.
pub const DEPARTMENTS: &[(&str, &str)] = &[
    ("civil-affairs", "民政局 Civil Affairs Bureau"),
    ("public-security", "公安局 Public Security Bureau"),
    ("vehicle-admin", "车辆管理所 Vehicle Administration"),
    ("real-estate", "不动产登记中心 Real-Estate Registry"),
    ("tax", "税务局 Tax Bureau"),
    (
        "hrss",
        "人力资源和社会保障局 Human Resources and Social Security",
    ),
    ("market-regulation", "市场监督管理局 Market Regulation"),
    ("education", "教育局 Education Bureau"),
    ("electricity", "供电局 Electricity Utility"),
];

/// How much data to generate.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub persons: usize,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            persons: 100_000,
            seed: 20_140_901,
        }
    }
}

/// The known answers planted for the mission's scenarios (see the crate docs).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Planted {
    pub seed: u64,
    pub persons: usize,
    pub companies: usize,
    /// Household ids of every relief applicant household.
    pub relief_households: Vec<String>,
    /// Household ids of applicant households where a member owns a vehicle or real estate.
    pub relief_households_with_assets: Vec<String>,
    pub arrears_companies: Vec<String>,
    pub tax_electricity_outliers: Vec<String>,
    pub official_person_id: String,
    pub official_name: String,
    pub official_macau_trips_2025: usize,
    pub official_properties: Vec<String>,
    pub official_vehicles: Vec<String>,
    pub address_conflicts: Vec<String>,
    pub cosmetic_address_differences: Vec<String>,
    pub enrolment_application: String,
    pub enrolment_child_id: String,
    pub enrolment_guardian_owner_id: String,
    pub enrolment_guardian_insured_id: String,
    pub enrolment_lease_application: String,
    pub enrolment_lease_guardian_id: String,
}

const DISTRICTS: &[(&str, &str, &[&str])] = &[
    (
        "440604",
        "禅城区",
        &["祖庙街道", "石湾镇街道", "张槎街道", "南庄镇"],
    ),
    (
        "440605",
        "南海区",
        &["桂城街道", "大沥镇", "里水镇", "狮山镇", "西樵镇"],
    ),
    (
        "440606",
        "顺德区",
        &["大良街道", "容桂街道", "北滘镇", "乐从镇"],
    ),
    ("440607", "三水区", &["西南街道", "云东海街道", "白坭镇"]),
    ("440608", "高明区", &["荷城街道", "杨和镇", "明城镇"]),
];
const ROADS: &[&str] = &[
    "南海大道",
    "佛山大道",
    "季华路",
    "汾江路",
    "桂澜路",
    "海八路",
    "灯湖东路",
    "岭南大道",
    "文华路",
    "澜石路",
    "魁奇路",
    "绿景路",
    "同济路",
    "东平路",
];
const SURNAMES: &[&str] = &[
    "陈", "李", "黄", "张", "梁", "刘", "林", "何", "罗", "吴", "王", "周", "冯", "郑", "杨", "谢",
    "邓", "麦", "区", "潘", "朱", "叶", "蔡", "苏", "卢", "关", "欧阳", "司徒",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "嘉", "欣", "志", "文", "俊", "浩", "婷", "雪",
    "晓", "健", "锦", "荣", "泳", "诗", "颖", "凯",
];
const INDUSTRIES: &[(&str, &str)] = &[
    ("制造业", "五金制品"),
    ("制造业", "陶瓷"),
    ("制造业", "家具"),
    ("制造业", "家电"),
    ("批发和零售业", "贸易"),
    ("信息技术服务业", "科技"),
    ("建筑业", "建筑工程"),
    ("住宿和餐饮业", "餐饮管理"),
    ("交通运输业", "物流"),
    ("制造业", "纺织"),
    ("制造业", "铝型材"),
];
const BRANDS: &[&str] = &[
    "广汽丰田",
    "广汽本田",
    "比亚迪",
    "一汽大众",
    "上汽通用五菱",
    "小鹏",
    "吉利",
    "长安",
    "东风日产",
    "宝马",
];
const SCHOOLS: &[&str] = &[
    "佛山市南海区桂城中心小学",
    "佛山市禅城区石湾第一小学",
    "佛山市顺德区大良实验小学",
    "佛山市南海区石门实验中学",
    "佛山市第一中学",
    "佛山市三水区西南中学",
];
const DESTINATIONS: &[&str] = &["香港", "澳门", "泰国", "日本", "新加坡", "马来西亚"];

#[derive(Debug, Clone)]
struct Person {
    id: String,
    name: String,
    male: bool,
    birth: (u32, u32, u32),
    household: usize,
    relation: &'static str,
    phone: String,
}

#[derive(Debug, Clone)]
struct Household {
    id: String,
    region: usize,
    address: String,
    members: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Company {
    code: String,
    name: String,
    address: String,
    legal_rep: usize,
    industry: &'static str,
    capital: f64,
    established: String,
}

#[derive(Debug, Clone)]
enum Val {
    Text(String),
    Int(i64),
    Real(f64),
    Null,
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Val {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Real((v * 100.0).round() / 100.0)
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Val {
        v.map(Val::Text).unwrap_or(Val::Null)
    }
}

macro_rules! row {
    ($($v:expr),* $(,)?) => { vec![$(Val::from($v)),*] };
}

/// One table to write: DDL and rows.
struct Table {
    ddl: &'static str,
    name: &'static str,
    columns: usize,
    rows: Vec<Vec<Val>>,
}

fn date(y: u32, m: u32, d: u32) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

fn age_in_2026(p: &Person) -> u32 {
    2026 - p.birth.0
}

fn full_width_digits(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

struct World {
    persons: Vec<Person>,
    households: Vec<Household>,
    companies: Vec<Company>,
}

fn person_name(rng: &mut Rng) -> String {
    let mut name = rng.pick(SURNAMES).to_string();
    name.push_str(rng.pick::<&str>(GIVEN));
    if rng.chance(0.7) {
        name.push_str(rng.pick::<&str>(GIVEN));
    }
    name
}

fn address(rng: &mut Rng, region: usize) -> String {
    let (_, district, streets) = DISTRICTS[region];
    let mut a = format!(
        "广东省佛山市{district}{}{}{}号",
        rng.pick(streets),
        rng.pick(ROADS),
        rng.range(1, 300)
    );
    if rng.chance(0.6) {
        a.push_str(&format!("{}座{}室", rng.range(1, 30), rng.range(101, 3300)));
    }
    a
}

fn build_world(opts: &Options) -> World {
    let root = Rng::new(opts.seed);
    let mut rng = root.fork("persons");
    let mut persons: Vec<Person> = Vec::with_capacity(opts.persons);
    let mut households = Vec::new();
    let mut used = HashSet::with_capacity(opts.persons);
    let mut new_id = |rng: &mut Rng, region: &str, birth: (u32, u32, u32), male: bool| loop {
        let seq = rng.range(0, 500) as u16 * 2 + u16::from(male);
        let id = resident_id(
            region,
            &format!("{:04}{:02}{:02}", birth.0, birth.1, birth.2),
            seq,
        );
        if used.insert(id.clone()) {
            return id;
        }
    };
    while persons.len() < opts.persons {
        let region = rng.range(0, DISTRICTS.len() as u64) as usize;
        let h = households.len();
        let size = (rng.range(1, 6) as usize).min(opts.persons - persons.len());
        let mut household = Household {
            id: format!("{}{:08}", DISTRICTS[region].0, h + 1),
            region,
            address: address(&mut rng, region),
            members: Vec::new(),
        };
        let head_year = rng.range(1950, 1996) as u32;
        for k in 0..size {
            let (relation, year) = match k {
                0 => ("户主", head_year),
                1 => (
                    "配偶",
                    (head_year as i64 + rng.range(0, 7) as i64 - 3) as u32,
                ),
                _ => {
                    let lo = (head_year + 20).max(1990);
                    (
                        if rng.chance(0.5) { "子" } else { "女" },
                        rng.range(lo as u64, 2023) as u32,
                    )
                }
            };
            let male = match (k, relation) {
                (0, _) => rng.chance(0.6),
                (1, _) => !persons[household.members[0]].male,
                (_, "子") => true,
                _ => false,
            };
            let birth = (year, rng.range(1, 13) as u32, rng.range(1, 29) as u32);
            let id = new_id(&mut rng, DISTRICTS[region].0, birth, male);
            let phone = format!(
                "1{}{:09}",
                rng.pick(&["38", "39", "36", "58", "59", "88", "89", "77"]),
                rng.range(0, 1_000_000_000)
            );
            household.members.push(persons.len());
            persons.push(Person {
                id,
                name: person_name(&mut rng),
                male,
                birth,
                household: h,
                relation,
                phone,
            });
        }
        // Family members share the head's surname in most households.
        households.push(household);
    }
    // Children usually carry the head's surname.
    for h in &households {
        let head_surname: String = persons[h.members[0]].name.chars().take(1).collect();
        for &m in h.members.iter().skip(2) {
            let given: String = persons[m].name.chars().skip(1).collect();
            persons[m].name = format!("{head_surname}{given}");
        }
    }
    let mut rng = root.fork("companies");
    let adults: Vec<usize> = (0..persons.len())
        .filter(|&i| (25..=65).contains(&age_in_2026(&persons[i])))
        .collect();
    let company_count = (opts.persons / 20).max(50);
    let mut codes = HashSet::new();
    let mut companies = Vec::with_capacity(company_count);
    while companies.len() < company_count {
        let region = rng.range(0, DISTRICTS.len() as u64) as usize;
        let code = uscc(
            DISTRICTS[region].0,
            rng.range(10_000_000, 99_999_999) as u32,
        );
        if !codes.insert(code.clone()) {
            continue;
        }
        let (industry, word) = *rng.pick(INDUSTRIES);
        let brand: String = (0..2).map(|_| *rng.pick(GIVEN)).collect();
        companies.push(Company {
            name: format!("佛山市{}{brand}{word}有限公司", DISTRICTS[region].1),
            address: address(&mut rng, region),
            legal_rep: *rng.pick(&adults),
            industry,
            capital: (rng.range(10, 5000) * 10_000) as f64,
            established: date(
                rng.range(1995, 2025) as u32,
                rng.range(1, 13) as u32,
                rng.range(1, 29) as u32,
            ),
            code,
        });
    }
    World {
        persons,
        households,
        companies,
    }
}

/// Generates every department's database and manifest into `dir`.
pub async fn generate(dir: &Path, opts: &Options) -> Result<Planted, DemoError> {
    if opts.persons < 1_000 || opts.persons > 20_000_000 {
        return Err(DemoError::Options(format!(
            "persons must be between 1,000 and 20,000,000 (got {})",
            opts.persons
        )));
    }
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let world = build_world(opts);
    let root = Rng::new(opts.seed);
    let persons = &world.persons;
    let households = &world.households;
    let companies = &world.companies;
    let mut planted = Planted {
        seed: opts.seed,
        persons: persons.len(),
        companies: companies.len(),
        ..Planted::default()
    };

    // --- choose the planted people and households -----------------------
    let company_reps: HashSet<usize> = companies.iter().map(|c| c.legal_rep).collect();
    let official = (0..persons.len())
        .find(|&i| {
            let a = age_in_2026(&persons[i]);
            (40..=60).contains(&a) && !company_reps.contains(&i) && persons[i].relation == "户主"
        })
        .expect("some person aged 40-60");
    // Enrolment: a household with head, spouse and a child aged 6 or 7.
    let enrol_household = households
        .iter()
        .position(|h| {
            h.members.len() >= 3
                && h.members.iter().any(|&m| {
                    persons[m].relation != "户主"
                        && persons[m].relation != "配偶"
                        && (6..=7).contains(&age_in_2026(&persons[m]))
                })
                && h.members[0] != official
        })
        .expect("a household with a young child");
    let lease_household = households
        .iter()
        .enumerate()
        .position(|(i, h)| {
            i != enrol_household
                && h.members.len() >= 3
                && h.members.iter().any(|&m| {
                    persons[m].relation != "户主"
                        && persons[m].relation != "配偶"
                        && (6..=7).contains(&age_in_2026(&persons[m]))
                })
                && h.members[0] != official
        })
        .expect("a second household with a young child");
    let relief_count = (opts.persons / 500).max(20);
    let with_assets = ((relief_count as f64) * 0.185).round() as usize;
    let excluded: HashSet<usize> = [
        persons[official].household,
        enrol_household,
        lease_household,
    ]
    .into_iter()
    .collect();
    let mut relief: Vec<usize> = Vec::new();
    let mut hrng = root.fork("relief");
    while relief.len() < relief_count {
        let h = hrng.range(0, households.len() as u64) as usize;
        let hh = &households[h];
        if hh.members.len() >= 2
            && !excluded.contains(&h)
            && !relief.contains(&h)
            && !hh.members.iter().any(|m| company_reps.contains(m))
        {
            relief.push(h);
        }
    }
    let relief_set: HashSet<usize> = relief.iter().copied().collect();
    let relief_person = |p: usize| relief_set.contains(&persons[p].household);

    // --- vehicles (车管所) ----------------------------------------------
    let mut vrng = root.fork("vehicles");
    let mut plates = HashSet::new();
    let mut vehicles = Vec::new();
    let mut new_vehicle = |vrng: &mut Rng, owner: usize, vehicles: &mut Vec<Vec<Val>>| -> String {
        let plate = loop {
            let letters = b"ABCDEFGHJKLMNPQRSTUVWXY";
            let p = format!(
                "粤{}{}{:04}",
                if vrng.chance(0.5) { 'E' } else { 'X' },
                letters[vrng.range(0, letters.len() as u64) as usize] as char,
                vrng.range(0, 10_000)
            );
            if plates.insert(p.clone()) {
                break p;
            }
        };
        let p = &persons[owner];
        vehicles.push(row![
            &plate,
            format!("LVS{:014}", vrng.range(0, 99_999_999_999_999)),
            &p.id,
            &p.name,
            *vrng.pick(BRANDS),
            *vrng.pick(&[
                "小型普通客车",
                "小型普通客车",
                "小型普通客车",
                "轻型货车",
                "二轮摩托车"
            ]),
            date(
                vrng.range(2005, 2026) as u32,
                vrng.range(1, 13) as u32,
                vrng.range(1, 29) as u32
            ),
            *vrng.pick(&["正常", "正常", "正常", "正常", "抵押"]),
        ]);
        plate
    };
    for (i, person) in persons.iter().enumerate() {
        let age = age_in_2026(person);
        if !(20..=80).contains(&age) || relief_person(i) || i == official {
            continue;
        }
        if vrng.chance(0.25) {
            new_vehicle(&mut vrng, i, &mut vehicles);
            if vrng.chance(0.15) {
                new_vehicle(&mut vrng, i, &mut vehicles);
            }
        }
    }
    for _ in 0..2 {
        let plate = new_vehicle(&mut vrng, official, &mut vehicles);
        planted.official_vehicles.push(plate);
    }

    // --- real estate (不动产登记中心) ------------------------------------
    let mut prng = root.fork("properties");
    let mut properties = Vec::new();
    let mut cert_seq = 0u64;
    let mut new_property = |prng: &mut Rng,
                            owner: usize,
                            addr: Option<&str>,
                            properties: &mut Vec<Vec<Val>>|
     -> String {
        cert_seq += 1;
        let p = &persons[owner];
        let region = households[p.household].region;
        let cert = format!(
            "粤({})佛山市不动产权第{:07}号",
            prng.range(2012, 2026),
            cert_seq
        );
        let address = addr
            .map(str::to_string)
            .unwrap_or_else(|| address(prng, region));
        properties.push(row![
            &cert,
            &p.id,
            &p.name,
            address,
            (prng.range(35, 180) as f64) + prng.float(),
            *prng.pick(&["住宅", "住宅", "住宅", "商业", "车位"]),
            date(
                prng.range(2000, 2026) as u32,
                prng.range(1, 13) as u32,
                prng.range(1, 29) as u32
            ),
        ]);
        cert
    };
    let mut owns_home: HashSet<usize> = HashSet::new();
    for (h, hh) in households.iter().enumerate() {
        let head = hh.members[0];
        if relief_set.contains(&h) || head == official || h == lease_household {
            continue;
        }
        if h == enrol_household || prng.chance(0.6) {
            new_property(&mut prng, head, Some(&hh.address), &mut properties);
            owns_home.insert(h);
            if prng.chance(0.1) {
                new_property(&mut prng, head, None, &mut properties);
            }
        }
    }
    let official_home = households[persons[official].household].address.clone();
    planted.official_properties.push(new_property(
        &mut prng,
        official,
        Some(&official_home),
        &mut properties,
    ));
    for _ in 0..2 {
        let cert = new_property(&mut prng, official, None, &mut properties);
        planted.official_properties.push(cert);
    }
    // Relief households that do hold assets.
    let mut arng = root.fork("relief-assets");
    let mut asset_households = BTreeSet::new();
    for &h in relief.iter().take(with_assets) {
        let hh = &households[h];
        let member = hh.members[arng.range(0, hh.members.len().min(2) as u64) as usize];
        let kind = arng.range(0, 100);
        if !(50..85).contains(&kind) {
            new_vehicle(&mut arng, member, &mut vehicles);
        }
        if kind >= 50 {
            new_property(&mut arng, member, None, &mut properties);
        }
        asset_households.insert(hh.id.clone());
    }
    planted.relief_households = relief.iter().map(|&h| households[h].id.clone()).collect();
    planted.relief_households.sort();
    planted.relief_households_with_assets = asset_households.into_iter().collect();

    // Leases: some households without a home of their own rent one.
    let mut lrng = root.fork("leases");
    let mut leases = Vec::new();
    for (h, hh) in households.iter().enumerate() {
        if owns_home.contains(&h) || relief_set.contains(&h) {
            continue;
        }
        if h == lease_household || lrng.chance(0.1) {
            let tenant = &persons[hh.members[0]];
            let landlord = &persons[lrng.range(0, persons.len() as u64) as usize];
            leases.push(row![
                format!("ZL{:08}", leases.len() + 1),
                &tenant.id,
                &tenant.name,
                &landlord.id,
                &hh.address,
                date(2025, lrng.range(1, 13) as u32, 1),
                date(2027, lrng.range(1, 13) as u32, 1),
            ]);
        }
    }

    // --- social insurance and income tax ----------------------------------
    let mut srng = root.fork("social-insurance");
    let mut insurance = Vec::new();
    let mut income_tax = Vec::new();
    let enrol_guardians = (
        households[enrol_household].members[0],
        households[enrol_household].members[1],
    );
    for (i, p) in persons.iter().enumerate() {
        let age = age_in_2026(p);
        let insured = i == enrol_guardians.1
            || ((22..=60).contains(&age) && srng.chance(if relief_person(i) { 0.2 } else { 0.7 }));
        if !insured {
            continue;
        }
        let employer = srng.pick(companies);
        let start_year = srng.range(2005, 2025) as u32;
        let ended = i != enrol_guardians.1 && srng.chance(0.1);
        insurance.push(row![
            &p.id,
            &p.name,
            &employer.code,
            &employer.name,
            "城镇职工基本养老保险",
            format!("{start_year:04}-{:02}", srng.range(1, 13)),
            if ended {
                Some(format!("2025-{:02}", srng.range(1, 13)))
            } else {
                None
            },
            if ended {
                "暂停缴费"
            } else {
                "正常参保"
            },
        ]);
        let income = if relief_person(i) {
            srng.range(8_000, 30_000)
        } else {
            srng.range(40_000, 400_000)
        } as f64;
        let tax = ((income - 60_000.0).max(0.0) * 0.1).round();
        income_tax.push(row![&p.id, &p.name, 2025i64, income, tax]);
    }

    // --- companies, taxes, electricity, arrears, conflicts ------------------
    let mut crng = root.fork("company-figures");
    let outlier_count = (companies.len() / 100).max(2);
    let arrears_count = (companies.len() / 400).max(3);
    let conflict_count = (companies.len() / 333).max(3);
    let cosmetic_count = (companies.len() / 500).max(2);
    let mut order: Vec<usize> = (0..companies.len()).collect();
    for i in (1..order.len()).rev() {
        let j = crng.range(0, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let outliers: HashSet<usize> = order[..outlier_count].iter().copied().collect();
    let arrears: Vec<usize> = order[outlier_count..outlier_count + arrears_count].to_vec();
    let conflicts: Vec<usize> = order
        [outlier_count + arrears_count..outlier_count + arrears_count + conflict_count]
        .to_vec();
    let cosmetic: Vec<usize> =
        order[outlier_count + arrears_count + conflict_count..][..cosmetic_count].to_vec();
    planted.tax_electricity_outliers = {
        let mut v: Vec<String> = outliers
            .iter()
            .map(|&c| companies[c].code.clone())
            .collect();
        v.sort();
        v
    };
    planted.arrears_companies = sorted_codes(companies, &arrears);
    planted.address_conflicts = sorted_codes(companies, &conflicts);
    planted.cosmetic_address_differences = sorted_codes(companies, &cosmetic);

    let mut market = Vec::new();
    let mut taxpayers = Vec::new();
    let mut declarations = Vec::new();
    let mut usage = Vec::new();
    for (ci, c) in companies.iter().enumerate() {
        let rep = &persons[c.legal_rep];
        market.push(row![
            &c.code,
            &c.name,
            &c.address,
            &rep.id,
            &rep.name,
            c.industry,
            c.capital,
            &c.established,
            *crng.pick(&["存续", "存续", "存续", "在业"]),
        ]);
        let tax_address = if conflicts.contains(&ci) {
            let region = DISTRICTS
                .iter()
                .position(|d| c.code[2..8] == *d.0)
                .unwrap_or(0);
            let mut other = address(&mut crng, region);
            while other == c.address {
                other = address(&mut crng, region);
            }
            other
        } else if cosmetic.contains(&ci) {
            format!(
                " {} ",
                full_width_digits(&c.address).replacen("号", " 号", 1)
            )
        } else {
            c.address.clone()
        };
        taxpayers.push(row![
            &c.code,
            &c.name,
            tax_address,
            &rep.id,
            c.industry,
            &c.established
        ]);
        let base_kwh = crng.range(50_000, 5_000_000) as f64;
        for year in 2023..=2025i64 {
            let kwh = base_kwh * (0.85 + 0.3 * crng.float());
            let rate = if year == 2025 && outliers.contains(&ci) {
                0.005 + 0.02 * crng.float()
            } else {
                0.3 + 0.6 * crng.float()
            };
            let revenue = kwh * (1.5 + 4.5 * crng.float());
            declarations.push(row![&c.code, &c.name, year, revenue, kwh * rate]);
            usage.push(row![
                format!("0757{:08}", ci * 3 + (year - 2023) as usize),
                &c.code,
                &c.name,
                year,
                kwh
            ]);
        }
    }
    let arrears_rows: Vec<Vec<Val>> = arrears
        .iter()
        .map(|&ci| {
            let c = &companies[ci];
            let months = crng.range(3, 25) as i64;
            row![
                &c.code,
                &c.name,
                months,
                months as f64 * crng.range(20_000, 200_000) as f64,
                "2026-10-31"
            ]
        })
        .collect();

    // --- exit and entry (公安局出入境) --------------------------------------
    let mut erng = root.fork("exit-entry");
    let mut crossings = Vec::new();
    let trip =
        |erng: &mut Rng, p: &Person, dest: &str, year: u32, crossings: &mut Vec<Vec<Val>>| {
            let (m, d) = (erng.range(1, 13) as u32, erng.range(1, 27) as u32);
            let port = match dest {
                "澳门" => "拱北口岸",
                "香港" => "深圳湾口岸",
                _ => "广州白云国际机场",
            };
            let hour = erng.range(7, 20);
            crossings.push(row![
                &p.id,
                &p.name,
                "出境",
                port,
                dest,
                format!("{} {hour:02}:{:02}:00", date(year, m, d), erng.range(0, 60))
            ]);
            crossings.push(row![
                &p.id,
                &p.name,
                "入境",
                port,
                dest,
                format!(
                    "{} {:02}:{:02}:00",
                    date(year, m, d + erng.range(0, 3) as u32),
                    (hour + 3).min(23),
                    erng.range(0, 60)
                )
            ]);
        };
    for (i, p) in persons.iter().enumerate() {
        if i == official || age_in_2026(p) < 18 || !erng.chance(0.08) {
            continue;
        }
        for _ in 0..erng.range(1, 4) {
            let dest = *erng.pick(DESTINATIONS);
            let year = erng.range(2023, 2026) as u32;
            trip(&mut erng, p, dest, year, &mut crossings);
        }
    }
    for _ in 0..40 {
        trip(&mut erng, &persons[official], "澳门", 2025, &mut crossings);
    }
    trip(&mut erng, &persons[official], "泰国", 2024, &mut crossings);
    planted.official_person_id = persons[official].id.clone();
    planted.official_name = persons[official].name.clone();
    planted.official_macau_trips_2025 = 40;
    let crossings: Vec<Vec<Val>> = crossings
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.insert(0, Val::Int(i as i64 + 1));
            r
        })
        .collect();

    // --- education ---------------------------------------------------------
    let mut drng = root.fork("education");
    let mut students = Vec::new();
    for hh in households {
        if hh.members.len() < 3 {
            continue;
        }
        for &m in &hh.members[2..] {
            let p = &persons[m];
            let age = age_in_2026(p);
            if (8..=18).contains(&age) {
                students.push(row![
                    format!("G{}", p.id),
                    &p.id,
                    &p.name,
                    date(p.birth.0, p.birth.1, p.birth.2),
                    *drng.pick(SCHOOLS),
                    format!("{}年级", (age - 6).min(12)),
                    &persons[hh.members[0]].id,
                    &persons[hh.members[1]].id,
                ]);
            }
        }
    }
    let child_of = |h: usize| -> usize {
        *households[h]
            .members
            .iter()
            .find(|&&m| {
                persons[m].relation != "户主"
                    && persons[m].relation != "配偶"
                    && (6..=7).contains(&age_in_2026(&persons[m]))
            })
            .expect("checked above")
    };
    let (child, lease_child) = (child_of(enrol_household), child_of(lease_household));
    let applications = vec![
        row![
            "EA-2026-0001",
            &persons[child].id,
            &persons[child].name,
            &persons[enrol_guardians.0].id,
            &persons[enrol_guardians.1].id,
            SCHOOLS[0],
            "2026-05-10",
            "待核验"
        ],
        row![
            "EA-2026-0002",
            &persons[lease_child].id,
            &persons[lease_child].name,
            &persons[households[lease_household].members[0]].id,
            &persons[households[lease_household].members[1]].id,
            SCHOOLS[1],
            "2026-05-12",
            "待核验"
        ],
    ];
    planted.enrolment_application = "EA-2026-0001".into();
    planted.enrolment_child_id = persons[child].id.clone();
    planted.enrolment_guardian_owner_id = persons[enrol_guardians.0].id.clone();
    planted.enrolment_guardian_insured_id = persons[enrol_guardians.1].id.clone();
    planted.enrolment_lease_application = "EA-2026-0002".into();
    planted.enrolment_lease_guardian_id =
        persons[households[lease_household].members[0]].id.clone();

    // --- civil affairs -------------------------------------------------------
    let mut rrng = root.fork("relief-applications");
    let mut applications_rows = Vec::new();
    let mut members_rows = Vec::new();
    for (n, &h) in relief.iter().enumerate() {
        let hh = &households[h];
        let app = format!("DB-2026-{:05}", n + 1);
        let head = &persons[hh.members[0]];
        applications_rows.push(row![
            &app,
            &hh.id,
            &head.id,
            &head.name,
            hh.members.len() as i64,
            rrng.range(300, 1500) as f64,
            date(2026, rrng.range(1, 11) as u32, rrng.range(1, 29) as u32),
            "审核中",
        ]);
        for &m in &hh.members {
            let p = &persons[m];
            members_rows.push(row![&app, &hh.id, &p.id, &p.name, p.relation]);
        }
    }

    // --- public security: household registration ---------------------------
    let registration: Vec<Vec<Val>> = persons
        .iter()
        .map(|p| {
            let hh = &households[p.household];
            row![
                &p.id,
                &p.name,
                if p.male { "男" } else { "女" },
                date(p.birth.0, p.birth.1, p.birth.2),
                "汉族",
                &hh.id,
                p.relation,
                &hh.address,
                &p.phone,
                date(p.birth.0.max(1990), p.birth.1, p.birth.2),
            ]
        })
        .collect();

    // --- write every department ---------------------------------------------
    let t = |name, ddl, columns, rows| Table {
        name,
        ddl,
        columns,
        rows,
    };
    let departments: Vec<(&str, Vec<Table>)> = vec![
        ("public-security", vec![
            t("household_registration", "CREATE TABLE household_registration (person_id TEXT PRIMARY KEY, name TEXT NOT NULL, gender TEXT, birth_date DATE, ethnicity TEXT, household_id TEXT, relation_to_head TEXT, address TEXT, phone TEXT, registered_on DATE)", 10, registration),
            t("exit_entry_records", "CREATE TABLE exit_entry_records (record_id INTEGER PRIMARY KEY, person_id TEXT NOT NULL, name TEXT, direction TEXT, port TEXT, destination TEXT, crossed_at TIMESTAMP)", 7, crossings),
        ]),
        ("civil-affairs", vec![
            t("relief_applications", "CREATE TABLE relief_applications (application_id TEXT PRIMARY KEY, household_id TEXT, applicant_id TEXT, applicant_name TEXT, member_count INTEGER, monthly_income REAL, applied_on DATE, status TEXT)", 8, applications_rows),
            t("relief_members", "CREATE TABLE relief_members (application_id TEXT, household_id TEXT, person_id TEXT, name TEXT, relation TEXT)", 5, members_rows),
        ]),
        ("vehicle-admin", vec![
            t("vehicles", "CREATE TABLE vehicles (plate_no TEXT PRIMARY KEY, vin TEXT, owner_id TEXT, owner_name TEXT, brand TEXT, vehicle_type TEXT, registered_on DATE, status TEXT)", 8, vehicles),
        ]),
        ("real-estate", vec![
            t("properties", "CREATE TABLE properties (cert_no TEXT PRIMARY KEY, owner_id TEXT, owner_name TEXT, address TEXT, area_m2 REAL, usage TEXT, registered_on DATE)", 7, properties),
            t("leases", "CREATE TABLE leases (lease_id TEXT PRIMARY KEY, tenant_id TEXT, tenant_name TEXT, landlord_id TEXT, address TEXT, start_on DATE, end_on DATE)", 7, leases),
        ]),
        ("tax", vec![
            t("taxpayers", "CREATE TABLE taxpayers (org_code TEXT PRIMARY KEY, name TEXT, registered_address TEXT, legal_rep_id TEXT, industry TEXT, registered_on DATE)", 6, taxpayers),
            t("tax_declarations", "CREATE TABLE tax_declarations (org_code TEXT, name TEXT, year INTEGER, revenue REAL, declared_tax REAL)", 5, declarations),
            t("individual_income_tax", "CREATE TABLE individual_income_tax (person_id TEXT, name TEXT, year INTEGER, taxable_income REAL, tax_paid REAL)", 5, income_tax),
        ]),
        ("hrss", vec![
            t("social_insurance", "CREATE TABLE social_insurance (person_id TEXT, name TEXT, employer_org_code TEXT, employer_name TEXT, insurance_type TEXT, start_month TEXT, end_month TEXT, status TEXT)", 8, insurance),
            t("contribution_arrears", "CREATE TABLE contribution_arrears (org_code TEXT PRIMARY KEY, company_name TEXT, months_in_arrears INTEGER, amount_owed REAL, as_of DATE)", 5, arrears_rows),
        ]),
        ("market-regulation", vec![
            t("companies", "CREATE TABLE companies (org_code TEXT PRIMARY KEY, name TEXT, registered_address TEXT, legal_rep_id TEXT, legal_rep_name TEXT, industry TEXT, registered_capital REAL, established_on DATE, status TEXT)", 9, market),
        ]),
        ("education", vec![
            t("students", "CREATE TABLE students (student_id TEXT PRIMARY KEY, person_id TEXT, name TEXT, birth_date DATE, school TEXT, grade TEXT, guardian1_id TEXT, guardian2_id TEXT)", 8, students),
            t("enrolment_applications", "CREATE TABLE enrolment_applications (application_id TEXT PRIMARY KEY, child_id TEXT, child_name TEXT, guardian1_id TEXT, guardian2_id TEXT, school TEXT, applied_on DATE, status TEXT)", 8, applications),
        ]),
        ("electricity", vec![
            t("electricity_usage", "CREATE TABLE electricity_usage (account_id TEXT PRIMARY KEY, org_code TEXT, company_name TEXT, year INTEGER, kwh REAL)", 5, usage),
        ]),
    ];
    for (dept, tables) in departments {
        write_database(&dir.join(format!("{dept}.db")), tables).await?;
        let manifest = crate::generate::manifest_for(dept);
        let path = dir.join(format!("{dept}.toml"));
        std::fs::write(&path, manifest).map_err(|source| DemoError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    let path = dir.join("planted.json");
    let json = serde_json::to_string_pretty(&planted).expect("plain data serializes");
    std::fs::write(&path, json).map_err(|source| DemoError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(planted)
}

fn sorted_codes(companies: &[Company], idx: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = idx.iter().map(|&c| companies[c].code.clone()).collect();
    v.sort();
    v
}

/// The catalog manifest shipped for a demo department.
pub fn manifest_for(dept: &str) -> &'static str {
    match dept {
        "civil-affairs" => include_str!("../manifests/civil-affairs.toml"),
        "public-security" => include_str!("../manifests/public-security.toml"),
        "vehicle-admin" => include_str!("../manifests/vehicle-admin.toml"),
        "real-estate" => include_str!("../manifests/real-estate.toml"),
        "tax" => include_str!("../manifests/tax.toml"),
        "hrss" => include_str!("../manifests/hrss.toml"),
        "market-regulation" => include_str!("../manifests/market-regulation.toml"),
        "education" => include_str!("../manifests/education.toml"),
        "electricity" => include_str!("../manifests/electricity.toml"),
        _ => "",
    }
}

async fn write_database(path: &Path, tables: Vec<Table>) -> Result<(), DemoError> {
    let db = path.display().to_string();
    let err = |source| DemoError::Sqlite {
        db: db.clone(),
        source,
    };
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{db}"))
        .map_err(err)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Off);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(err)?;
    let mut tx = conn.begin().await.map_err(err)?;
    let names: Vec<&str> = tables.iter().map(|t| t.name).collect();
    for table in tables {
        sqlx::query(table.ddl)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let per_statement = (900 / table.columns).max(1);
        let placeholders = format!("({})", vec!["?"; table.columns].join(","));
        for chunk in table.rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO {} VALUES {}",
                table.name,
                vec![placeholders.as_str(); chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for row in chunk {
                debug_assert_eq!(row.len(), table.columns, "{}", table.name);
                for v in row {
                    q = match v {
                        Val::Text(s) => q.bind(s.as_str()),
                        Val::Int(i) => q.bind(*i),
                        Val::Real(f) => q.bind(*f),
                        Val::Null => q.bind(None::<String>),
                    };
                }
            }
            q.execute(&mut *tx).await.map_err(err)?;
        }
    }
    for idx in [
        "CREATE INDEX IF NOT EXISTS idx_vehicles_owner ON vehicles(owner_id)",
        "CREATE INDEX IF NOT EXISTS idx_properties_owner ON properties(owner_id)",
        "CREATE INDEX IF NOT EXISTS idx_exit_entry_person ON exit_entry_records(person_id)",
        "CREATE INDEX IF NOT EXISTS idx_social_person ON social_insurance(person_id)",
        "CREATE INDEX IF NOT EXISTS idx_income_tax_person ON individual_income_tax(person_id)",
        "CREATE INDEX IF NOT EXISTS idx_declarations_org ON tax_declarations(org_code)",
        "CREATE INDEX IF NOT EXISTS idx_usage_org ON electricity_usage(org_code)",
        "CREATE INDEX IF NOT EXISTS idx_relief_members_person ON relief_members(person_id)",
        "CREATE INDEX IF NOT EXISTS idx_household ON household_registration(household_id)",
        // Every other column carrying a semantic key, as a department's
        // database would have: lookups across departments read by key.
        "CREATE INDEX IF NOT EXISTS idx_relief_applicant ON relief_applications(applicant_id)",
        "CREATE INDEX IF NOT EXISTS idx_relief_household ON relief_applications(household_id)",
        "CREATE INDEX IF NOT EXISTS idx_relief_members_household ON relief_members(household_id)",
        "CREATE INDEX IF NOT EXISTS idx_students_person ON students(person_id)",
        "CREATE INDEX IF NOT EXISTS idx_students_guardian1 ON students(guardian1_id)",
        "CREATE INDEX IF NOT EXISTS idx_students_guardian2 ON students(guardian2_id)",
        "CREATE INDEX IF NOT EXISTS idx_enrolment_child ON enrolment_applications(child_id)",
        "CREATE INDEX IF NOT EXISTS idx_enrolment_guardian1 ON enrolment_applications(guardian1_id)",
        "CREATE INDEX IF NOT EXISTS idx_enrolment_guardian2 ON enrolment_applications(guardian2_id)",
        "CREATE INDEX IF NOT EXISTS idx_social_employer ON social_insurance(employer_org_code)",
        "CREATE INDEX IF NOT EXISTS idx_companies_legal_rep ON companies(legal_rep_id)",
        "CREATE INDEX IF NOT EXISTS idx_leases_tenant ON leases(tenant_id)",
        "CREATE INDEX IF NOT EXISTS idx_taxpayers_legal_rep ON taxpayers(legal_rep_id)",
        "CREATE INDEX IF NOT EXISTS idx_household_phone ON household_registration(phone)",
    ] {
        if names.iter().any(|t| idx.contains(&format!(" ON {t}("))) {
            sqlx::query(idx).execute(&mut *tx).await.map_err(err)?;
        }
    }
    tx.commit().await.map_err(err)?;
    conn.close().await.map_err(err)?;
    Ok(())
}
