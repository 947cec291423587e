use exchange_pki::Role;
use time::Date;

use super::*;

fn book() -> AccessBook {
    AccessBook::open(&Db::temporary().unwrap(), 5).unwrap()
}

fn field(name: &str, t: &str, sensitivity: &str, mask: &str) -> pb::Field {
    pb::Field {
        name: name.into(),
        r#type: t.into(),
        sensitivity: sensitivity.into(),
        mask: mask.into(),
        ..Default::default()
    }
}

fn dataset(sharing: &str) -> pb::Dataset {
    pb::Dataset {
        id: "vehicle-admin/vehicles".into(),
        department: "vehicle-admin".into(),
        sharing: sharing.into(),
        basis: "《道路交通安全法》".into(),
        fields: vec![
            field("plate_no", "string", "internal", "none"),
            field("owner_id", "string", "sensitive", "id_number"),
            field("owner_name", "string", "sensitive", "surname"),
            field("registered_on", "date", "internal", "none"),
            field("engine_no", "string", "secret", "none"),
        ],
        ..Default::default()
    }
}

fn who(member: &str) -> Identity {
    Identity::new(member, Role::Client).unwrap()
}

fn ask(fields: &[&str]) -> pb::AccessRequest {
    pb::AccessRequest {
        dataset: "vehicle-admin/vehicles".into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purpose: "低保家庭财产核查".into(),
        basis: "《社会救助暂行办法》第十一条".into(),
        user: "王小明".into(),
        ..Default::default()
    }
}

#[test]
fn unconditional_is_granted_at_once_without_secret_fields() {
    let b = book();
    let r = b
        .request(&who("civil-affairs"), &ask(&[]), &dataset("unconditional"))
        .unwrap();
    assert_eq!(r.status, "granted");
    assert!(r.decided_by.starts_with("policy"));
    let g = b.grant(&r.grant_id).unwrap().unwrap();
    assert_eq!(g.consumer, "civil-affairs");
    assert_eq!(g.fields.len(), 4, "every non-secret field");
    assert!(
        g.fields.contains(&("owner_id".into(), "id_number".into())),
        "default masks"
    );
    assert!(!g.fields.iter().any(|(n, _)| n == "engine_no"));
}

#[test]
fn none_is_refused_with_the_basis_and_secret_fields_are_never_requestable() {
    let b = book();
    let r = b
        .request(&who("civil-affairs"), &ask(&[]), &dataset("none"))
        .unwrap();
    assert_eq!(r.status, "refused");
    assert!(r.reason.contains("道路交通安全法"));
    let err = b
        .request(
            &who("civil-affairs"),
            &ask(&["engine_no"]),
            &dataset("conditional"),
        )
        .unwrap_err();
    assert!(matches!(err, AccessError::Forbidden(_)), "{err}");
    let err = b
        .request(
            &who("civil-affairs"),
            &ask(&["nope"]),
            &dataset("conditional"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("no field"), "{err}");
    let err = b
        .request(&who("vehicle-admin"), &ask(&[]), &dataset("conditional"))
        .unwrap_err();
    assert!(err.to_string().contains("your own"), "{err}");
    let mut no_purpose = ask(&[]);
    no_purpose.purpose = "  ".into();
    assert!(b
        .request(&who("civil-affairs"), &no_purpose, &dataset("conditional"))
        .unwrap_err()
        .to_string()
        .contains("purpose is required"));
    let mut past = ask(&[]);
    past.until = "2001-01-01".into();
    assert!(b
        .request(&who("civil-affairs"), &past, &dataset("conditional"))
        .is_err());
    let mut garbage = ask(&[]);
    garbage.until = "next year".into();
    assert!(b
        .request(&who("civil-affairs"), &garbage, &dataset("conditional"))
        .unwrap_err()
        .to_string()
        .contains("YYYY-MM-DD"));
}

#[test]
fn the_owner_decides_and_may_only_narrow() {
    let b = book();
    let ds = dataset("conditional");
    let r = b
        .request(
            &who("civil-affairs"),
            &ask(&["plate_no", "owner_id", "owner_name"]),
            &ds,
        )
        .unwrap();
    assert_eq!(r.status, "pending");
    assert_eq!(b.pending("vehicle-admin").unwrap().len(), 1);
    assert!(b.pending("civil-affairs").unwrap().is_empty());
    let approve =
        |fields: &[&str], unmask: &[&str], filter: &str, until: &str| pb::ApproveRequest {
            request_id: r.id.clone(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            unmask: unmask.iter().map(|f| f.to_string()).collect(),
            row_filter: filter.into(),
            quota_rows_per_day: 10_000,
            until: until.into(),
            user: "李科长".into(),
            ..Default::default()
        };
    // Only the owner.
    let err = b
        .approve(&who("tax"), &approve(&[], &[], "", ""), &ds)
        .unwrap_err();
    assert!(matches!(err, AccessError::Forbidden(_)), "{err}");
    // Never wider.
    assert!(b
        .approve(
            &who("vehicle-admin"),
            &approve(&["registered_on"], &[], "", ""),
            &ds
        )
        .unwrap_err()
        .to_string()
        .contains("never widen"));
    assert!(b
        .approve(
            &who("vehicle-admin"),
            &approve(&["plate_no"], &["owner_id"], "", ""),
            &ds
        )
        .unwrap_err()
        .to_string()
        .contains("cannot unmask"));
    assert!(b
        .approve(
            &who("vehicle-admin"),
            &approve(&[], &[], "", "2999-01-01"),
            &ds
        )
        .unwrap_err()
        .to_string()
        .contains("only shorten"));
    assert!(b
        .approve(
            &who("vehicle-admin"),
            &approve(&[], &[], "plate_no = ", ""),
            &ds
        )
        .unwrap_err()
        .to_string()
        .contains("row filter"));
    assert!(b
        .approve(
            &who("vehicle-admin"),
            &approve(&[], &[], "engine_no = 'x'", ""),
            &ds
        )
        .unwrap_err()
        .to_string()
        .contains("row filter"));
    // A narrowed approval with an unmasked field and a row filter.
    let decided = b
        .approve(
            &who("vehicle-admin"),
            &approve(
                &["plate_no", "owner_id"],
                &["owner_id"],
                "plate_no LIKE '粤E%'",
                "",
            ),
            &ds,
        )
        .unwrap();
    assert_eq!(decided.status, "granted");
    assert!(
        decided
            .decided_by
            .contains("exchange://vehicle-admin/client")
            && decided.decided_by.contains("李科长")
    );
    let g = b.grant(&decided.grant_id).unwrap().unwrap();
    assert_eq!(
        g.fields,
        vec![
            ("plate_no".into(), "none".into()),
            ("owner_id".into(), "none".into())
        ]
    );
    assert_eq!(g.row_filter, "plate_no LIKE '粤E%'");
    assert_eq!(g.quota_rows_per_day, 10_000);
    // Decided once.
    assert!(matches!(
        b.approve(&who("vehicle-admin"), &approve(&[], &[], "", ""), &ds),
        Err(AccessError::Conflict(_))
    ));
    // Both sides see it.
    assert_eq!(b.requests_of("civil-affairs").unwrap().len(), 1);
    assert_eq!(b.grants_of("vehicle-admin").unwrap().len(), 1);
    assert!(b.grants_of("tax").unwrap().is_empty());
    // Revocation by the owner only.
    assert!(matches!(
        b.revoke(&who("civil-affairs"), &g.id, "x"),
        Err(AccessError::Forbidden(_))
    ));
    let revoked = b
        .revoke(&who("vehicle-admin"), &g.id, "purpose fulfilled")
        .unwrap();
    assert_eq!(revoked.status, "revoked");
    assert!(matches!(
        b.revoke(&who("vehicle-admin"), &g.id, "again"),
        Err(AccessError::Conflict(_))
    ));
}

#[test]
fn refusals_need_a_reason() {
    let b = book();
    let r = b
        .request(&who("civil-affairs"), &ask(&[]), &dataset("conditional"))
        .unwrap();
    let refuse = |reason: &str| pb::RefuseRequest {
        request_id: r.id.clone(),
        reason: reason.into(),
        user: String::new(),
    };
    assert!(b
        .refuse(&who("vehicle-admin"), &refuse("  "))
        .unwrap_err()
        .to_string()
        .contains("reason"));
    let done = b
        .refuse(&who("vehicle-admin"), &refuse("用途与数据不相关"))
        .unwrap();
    assert_eq!(
        (done.status.as_str(), done.reason.as_str()),
        ("refused", "用途与数据不相关")
    );
    assert!(b.pending("vehicle-admin").unwrap().is_empty());
}

#[test]
fn overdue_counts_working_days() {
    let d =
        |y, m, day| Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), day).unwrap();
    assert_eq!(
        working_days_between(d(2026, 11, 20), d(2026, 11, 23)),
        1,
        "Friday to Monday"
    );
    assert_eq!(working_days_between(d(2026, 11, 16), d(2026, 11, 23)), 5);
    let b = book();
    let mut r = b
        .request(&who("civil-affairs"), &ask(&[]), &dataset("conditional"))
        .unwrap();
    assert!(!b.is_overdue(&r));
    r.created_unix -= 10 * 86_400;
    assert!(
        b.is_overdue(&r),
        "ten calendar days is more than five working days"
    );
    r.status = "granted".into();
    assert!(!b.is_overdue(&r));
}

#[test]
fn overdue_requests_are_counted_per_owner_for_the_report() {
    let b = book();
    let fresh = b
        .request(&who("civil-affairs"), &ask(&[]), &dataset("conditional"))
        .unwrap();
    let mut old = b
        .request(&who("tax"), &ask(&[]), &dataset("conditional"))
        .unwrap();
    old.created_unix -= 10 * 86_400;
    b.requests.insert(&old.id, &old).unwrap();
    assert!(!b.is_overdue(&fresh));
    let all = b.overdue_by_owner(|_, _| true).unwrap();
    assert_eq!(all.get("vehicle-admin"), Some(&1), "{all:?}");
    // A department that is neither owner nor consumer counts nothing.
    let civil = b.overdue_by_owner(|o, c| o == "civil-affairs" || c == "civil-affairs");
    assert!(civil.unwrap().is_empty());
}

#[test]
fn grants_survive_a_reopen_and_revocation_ends_the_active_grant() {
    let db = Db::temporary().unwrap();
    let grant_id = {
        let b = AccessBook::open(&db, 5).unwrap();
        let r = b
            .request(&who("civil-affairs"), &ask(&[]), &dataset("unconditional"))
            .unwrap();
        r.grant_id
    };
    // A new book on the same store (a restarted coordinator) knows it.
    let b = AccessBook::open(&db, 5).unwrap();
    let active = b
        .active_grant("civil-affairs", "vehicle-admin/vehicles")
        .expect("the grant is active after a reopen");
    assert_eq!(active.id, grant_id);
    assert!(b.active_grant("tax", "vehicle-admin/vehicles").is_none());
    assert!(b.active_grant("civil-affairs", "tax/taxpayers").is_none());
    assert_eq!(b.grants_of("civil-affairs").unwrap().len(), 1);
    assert_eq!(b.grants_of("vehicle-admin").unwrap().len(), 1);
    assert!(b.grants_of("tax").unwrap().is_empty());

    // Only the owner revokes; afterwards no query finds an active grant,
    // in this book or in one reopened from the store.
    assert!(b.revoke(&who("civil-affairs"), &grant_id, "no").is_err());
    b.revoke(&who("vehicle-admin"), &grant_id, "purpose fulfilled")
        .unwrap();
    assert!(b
        .active_grant("civil-affairs", "vehicle-admin/vehicles")
        .is_none());
    assert_eq!(b.grant(&grant_id).unwrap().unwrap().status, "revoked");
    let reopened = AccessBook::open(&db, 5).unwrap();
    assert!(reopened
        .active_grant("civil-affairs", "vehicle-admin/vehicles")
        .is_none());
    assert_eq!(
        reopened.grants_of("civil-affairs").unwrap()[0].status,
        "revoked"
    );
}

#[test]
fn an_identical_open_request_returns_the_first_instead_of_a_second_grant() {
    let b = book();
    let civil = who("civil-affairs");
    let (first, created) = b
        .request_once(&civil, &ask(&["plate_no"]), &dataset("conditional"))
        .unwrap();
    assert!(created);
    let (again, created) = b
        .request_once(
            &civil,
            &ask(&["plate_no", "plate_no"]),
            &dataset("conditional"),
        )
        .unwrap();
    assert_eq!((again.id.as_str(), created), (first.id.as_str(), false));
    // Other fields are another request.
    let (wider, created) = b
        .request_once(
            &civil,
            &ask(&["plate_no", "owner_id"]),
            &dataset("conditional"),
        )
        .unwrap();
    assert!(created && wider.id != first.id);

    // Unconditional data: the second identical request returns the first
    // grant; after its revocation a new request makes a new grant.
    let (granted, _) = b
        .request_once(&civil, &ask(&[]), &dataset("unconditional"))
        .unwrap();
    let (same, created) = b
        .request_once(&civil, &ask(&[]), &dataset("unconditional"))
        .unwrap();
    assert_eq!(
        (same.grant_id.as_str(), created),
        (granted.grant_id.as_str(), false)
    );
    let grants = b.grants_of("civil-affairs").unwrap();
    assert_eq!(grants.iter().filter(|g| g.status == "active").count(), 1);
    b.revoke(&who("vehicle-admin"), &granted.grant_id, "测试")
        .unwrap();
    let (renewed, created) = b
        .request_once(&civil, &ask(&[]), &dataset("unconditional"))
        .unwrap();
    assert!(created && renewed.grant_id != granted.grant_id);
}

#[test]
fn row_counts_are_kept_in_memory_and_reach_the_store_behind() {
    let db = Db::temporary().unwrap();
    let here = AccessBook::open(&db, 5).unwrap();
    assert_eq!(here.add_rows_served("G-000001", 10).unwrap(), 10);
    assert_eq!(here.add_rows_served("G-000001", 5).unwrap(), 15);
    // Another coordinator on the same store sees nothing before the flush...
    let there = AccessBook::open(&db, 5).unwrap();
    assert_eq!(there.rows_served_today("G-000001").unwrap(), 0);
    here.flush_usage().unwrap();
    // ...and the total after it; its own counts add to that total.
    let later = AccessBook::open(&db, 5).unwrap();
    assert_eq!(later.add_rows_served("G-000001", 1).unwrap(), 16);
    later.flush_usage().unwrap();
    // A flush reads back what the others added: 16 stored, 4 more here.
    here.add_rows_served("G-000001", 4).unwrap();
    here.flush_usage().unwrap();
    assert_eq!(here.rows_served_today("G-000001").unwrap(), 20);
}
