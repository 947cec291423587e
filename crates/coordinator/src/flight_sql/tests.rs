use arrow_flight::sql::{CommandStatementQuery, CommandStatementUpdate, ProstMessageExt};
use arrow_schema::DataType;

use super::*;

fn field(name: &str, t: &str, sensitivity: &str, mask: &str) -> pb::Field {
    pb::Field {
        name: name.into(),
        r#type: t.into(),
        sensitivity: sensitivity.into(),
        mask: mask.into(),
        ..Default::default()
    }
}

fn people() -> pb::Dataset {
    pb::Dataset {
        id: "public-security/people".into(),
        department: "public-security".into(),
        key_columns: vec!["person_id".into(), "case_no".into()],
        fields: vec![
            field("person_id", "string", "sensitive", "id_number"),
            field("birth_date", "date", "sensitive", "year"),
            field("height_cm", "integer", "internal", ""),
            field("case_no", "string", "secret", ""),
        ],
        ..Default::default()
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> MetadataMap {
    let mut m = MetadataMap::new();
    for (k, v) in pairs {
        m.insert(*k, v.parse().unwrap());
    }
    m
}

#[test]
fn the_result_schema_has_the_types_the_masks_deliver() {
    let d = people();
    let schema = result_schema(&d, &default_fields(&d)).unwrap();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("person_id", &DataType::Utf8),
            ("birth_date", &DataType::Int32),
            ("height_cm", &DataType::Int64),
        ],
        "the secret field is absent"
    );
}

#[test]
fn purposes_come_percent_encoded_in_a_header() {
    let m = headers(&[(PURPOSE_HEADER, "%E4%BD%8E%E4%BF%9D%20check")]);
    assert_eq!(header_text(&m, PURPOSE_HEADER).unwrap(), "低保 check");
    assert_eq!(header_text(&m, USER_HEADER).unwrap(), "");
    let bad = headers(&[(PURPOSE_HEADER, "%FF%FE")]);
    let e = header_text(&bad, PURPOSE_HEADER).unwrap_err();
    assert!(e.message().contains("percent-encode"), "{}", e.message());
}

#[test]
fn json_sql_and_garbage_are_told_apart() {
    let none = MetadataMap::new();
    let json = br#" {"dataset": "a/b", "purpose": "p"}"#;
    assert!(
        matches!(asked_by_bytes(json, &none, "command"), Ok(Asked::Query(c)) if c.dataset == "a/b")
    );
    let unknown_key = br#"{"dataset": "a/b", "purpose": "p", "colour": 1}"#;
    let e = asked_by_bytes(unknown_key, &none, "command").unwrap_err();
    assert!(e.message().contains("colour"), "{}", e.message());
    let e = asked_by_bytes(b"\x08\x96\x01junk", &none, "command").unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("neither a JSON query command"));

    let select = CommandStatementQuery {
        query: "SELECT * FROM a.b LIMIT 3".into(),
        transaction_id: None,
    }
    .as_any()
    .encode_to_vec();
    let e = asked_by_bytes(&select, &none, "command").unwrap_err();
    assert!(e.message().contains(PURPOSE_HEADER), "{}", e.message());
    let with_purpose = headers(&[(PURPOSE_HEADER, "audit")]);
    match asked_by_bytes(&select, &with_purpose, "command").unwrap() {
        Asked::Query(c) => assert_eq!((c.dataset.as_str(), c.limit), ("a/b", Some(3))),
        other => panic!("{other:?}"),
    }
    let update = CommandStatementUpdate {
        query: "UPDATE a.b SET x = 1".into(),
        transaction_id: None,
    }
    .as_any()
    .encode_to_vec();
    let e = asked_by_bytes(&update, &with_purpose, "command").unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    assert!(e.message().contains("only reads"));
}

/// The published JSON Schema and the command the coordinator parses agree
/// on keys, required keys, and the limit's bounds.
#[test]
fn the_json_schema_describes_the_command_the_coordinator_reads() {
    let text = include_str!("../../../../proto/query-command.schema.json");
    let schema: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let mut keys: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let command = serde_json::to_value(QueryCommand {
        dataset: String::new(),
        fields: Vec::new(),
        filter: String::new(),
        purpose: String::new(),
        user: String::new(),
        limit: None,
    })
    .unwrap();
    let mut fields: Vec<&str> = command
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(keys, fields);
    // Only what the command cannot default is required.
    for key in &keys {
        let without = serde_json::json!({"dataset": "a/b", "purpose": "p"});
        let mut with_all = without.clone();
        with_all[*key] = command[*key].clone();
        assert!(
            serde_json::from_value::<QueryCommand>(with_all).is_ok(),
            "{key}"
        );
    }
    assert_eq!(
        schema["required"],
        serde_json::json!(["dataset", "purpose"])
    );
    assert!(serde_json::from_value::<QueryCommand>(serde_json::json!({"purpose": "p"})).is_err());
    assert_eq!(
        schema["properties"]["limit"]["maximum"],
        crate::flight::MAX_LIMIT
    );
    assert_eq!(
        schema["properties"]["where"]["maxLength"],
        exchange_query::MAX_FILTER_BYTES
    );
}

#[test]
fn primary_keys_are_the_key_columns_the_caller_receives() {
    let d = people();
    let tables = [Table {
        dataset: &d,
        schema: result_schema(&d, &default_fields(&d)).unwrap(),
    }];
    let ask = |schema: Option<&str>| {
        Command::CommandGetPrimaryKeys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: schema.map(str::to_string),
            table: "people".into(),
        })
    };
    let answer = catalog_answer(ask(Some("public-security")), &tables).unwrap();
    assert_eq!(answer.schema(), catalog_schema(&ask(None)).unwrap());
    // The secret key column is withheld, so it is not listed.
    assert_eq!(answer.num_rows(), 1);
    let column = answer.column_by_name("column_name").unwrap();
    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(column.value(0), "person_id");
    assert_eq!(
        catalog_answer(ask(Some("tax")), &tables)
            .unwrap()
            .num_rows(),
        0
    );
}
