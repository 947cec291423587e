import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_STATE_UNSPECIFIED: _ClassVar[MemberState]
    MEMBER_STATE_PENDING: _ClassVar[MemberState]
    MEMBER_STATE_ACTIVE: _ClassVar[MemberState]
    MEMBER_STATE_REVOKED: _ClassVar[MemberState]

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_PENDING: _ClassVar[RequestState]
    REQUEST_STATE_GRANTED: _ClassVar[RequestState]
    REQUEST_STATE_REFUSED: _ClassVar[RequestState]

class GrantState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANT_STATE_UNSPECIFIED: _ClassVar[GrantState]
    GRANT_STATE_ACTIVE: _ClassVar[GrantState]
    GRANT_STATE_EXPIRED: _ClassVar[GrantState]
    GRANT_STATE_REVOKED: _ClassVar[GrantState]

class DisputeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISPUTE_STATE_UNSPECIFIED: _ClassVar[DisputeState]
    DISPUTE_STATE_OPEN: _ClassVar[DisputeState]
    DISPUTE_STATE_RESOLVED: _ClassVar[DisputeState]
    DISPUTE_STATE_REJECTED: _ClassVar[DisputeState]

class ReportColumnType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_COLUMN_TYPE_UNSPECIFIED: _ClassVar[ReportColumnType]
    REPORT_COLUMN_TYPE_INTEGER: _ClassVar[ReportColumnType]
    REPORT_COLUMN_TYPE_NUMBER: _ClassVar[ReportColumnType]
    REPORT_COLUMN_TYPE_TEXT: _ClassVar[ReportColumnType]

class LookupStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOOKUP_STATUS_UNSPECIFIED: _ClassVar[LookupStatus]
    LOOKUP_STATUS_OK: _ClassVar[LookupStatus]
    LOOKUP_STATUS_DENIED: _ClassVar[LookupStatus]
    LOOKUP_STATUS_OFFLINE: _ClassVar[LookupStatus]
    LOOKUP_STATUS_TIMED_OUT: _ClassVar[LookupStatus]
    LOOKUP_STATUS_ERROR: _ClassVar[LookupStatus]
MEMBER_STATE_UNSPECIFIED: MemberState
MEMBER_STATE_PENDING: MemberState
MEMBER_STATE_ACTIVE: MemberState
MEMBER_STATE_REVOKED: MemberState
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_PENDING: RequestState
REQUEST_STATE_GRANTED: RequestState
REQUEST_STATE_REFUSED: RequestState
GRANT_STATE_UNSPECIFIED: GrantState
GRANT_STATE_ACTIVE: GrantState
GRANT_STATE_EXPIRED: GrantState
GRANT_STATE_REVOKED: GrantState
DISPUTE_STATE_UNSPECIFIED: DisputeState
DISPUTE_STATE_OPEN: DisputeState
DISPUTE_STATE_RESOLVED: DisputeState
DISPUTE_STATE_REJECTED: DisputeState
REPORT_COLUMN_TYPE_UNSPECIFIED: ReportColumnType
REPORT_COLUMN_TYPE_INTEGER: ReportColumnType
REPORT_COLUMN_TYPE_NUMBER: ReportColumnType
REPORT_COLUMN_TYPE_TEXT: ReportColumnType
LOOKUP_STATUS_UNSPECIFIED: LookupStatus
LOOKUP_STATUS_OK: LookupStatus
LOOKUP_STATUS_DENIED: LookupStatus
LOOKUP_STATUS_OFFLINE: LookupStatus
LOOKUP_STATUS_TIMED_OUT: LookupStatus
LOOKUP_STATUS_ERROR: LookupStatus

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_der", "role", "server_names")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_DER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAMES_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_der: bytes
    role: str
    server_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token: _Optional[str] = ..., csr_der: _Optional[bytes] = ..., role: _Optional[str] = ..., server_names: _Optional[_Iterable[str]] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("member_id", "role", "identity", "certificate_der", "ca_certificate_der", "coordinator_address", "not_after_unix", "not_after")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_DER_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_DER_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    role: str
    identity: str
    certificate_der: bytes
    ca_certificate_der: bytes
    coordinator_address: str
    not_after_unix: int
    not_after: _timestamp_pb2.Timestamp
    def __init__(self, member_id: _Optional[str] = ..., role: _Optional[str] = ..., identity: _Optional[str] = ..., certificate_der: _Optional[bytes] = ..., ca_certificate_der: _Optional[bytes] = ..., coordinator_address: _Optional[str] = ..., not_after_unix: _Optional[int] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("member_id", "display_name", "token_ttl_secs")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    display_name: str
    token_ttl_secs: int
    def __init__(self, member_id: _Optional[str] = ..., display_name: _Optional[str] = ..., token_ttl_secs: _Optional[int] = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("member", "token", "ca_fingerprint", "enroll_address")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ENROLL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    member: Member
    token: EnrolmentToken
    ca_fingerprint: str
    enroll_address: str
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., token: _Optional[_Union[EnrolmentToken, _Mapping]] = ..., ca_fingerprint: _Optional[str] = ..., enroll_address: _Optional[str] = ...) -> None: ...

class EnrolmentToken(_message.Message):
    __slots__ = ("token", "role", "expires_unix", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    role: str
    expires_unix: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., role: _Optional[str] = ..., expires_unix: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("member_id", "role", "ttl_secs")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    role: str
    ttl_secs: int
    def __init__(self, member_id: _Optional[str] = ..., role: _Optional[str] = ..., ttl_secs: _Optional[int] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "ca_fingerprint", "enroll_address")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ENROLL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    token: EnrolmentToken
    ca_fingerprint: str
    enroll_address: str
    def __init__(self, token: _Optional[_Union[EnrolmentToken, _Mapping]] = ..., ca_fingerprint: _Optional[str] = ..., enroll_address: _Optional[str] = ...) -> None: ...

class RevokeMemberRequest(_message.Message):
    __slots__ = ("member_id", "reason")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    reason: str
    def __init__(self, member_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeMemberResponse(_message.Message):
    __slots__ = ("member", "revoked_certificates", "crl_number")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    member: Member
    revoked_certificates: int
    crl_number: int
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., revoked_certificates: _Optional[int] = ..., crl_number: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "display_name", "status", "created_unix", "revoked_unix", "certificates", "node", "revocation_reason", "state", "created_at", "revoked_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    status: str
    created_unix: int
    revoked_unix: int
    certificates: int
    node: NodeStatus
    revocation_reason: str
    state: MemberState
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., status: _Optional[str] = ..., created_unix: _Optional[int] = ..., revoked_unix: _Optional[int] = ..., certificates: _Optional[int] = ..., node: _Optional[_Union[NodeStatus, _Mapping]] = ..., revocation_reason: _Optional[str] = ..., state: _Optional[_Union[MemberState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("online", "last_seen_unix", "catalog_version", "datasets", "address", "last_seen_at")
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    online: bool
    last_seen_unix: int
    catalog_version: int
    datasets: int
    address: str
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, online: _Optional[bool] = ..., last_seen_unix: _Optional[int] = ..., catalog_version: _Optional[int] = ..., datasets: _Optional[int] = ..., address: _Optional[str] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class GetCrlRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCrlResponse(_message.Message):
    __slots__ = ("crl_number", "crl_der")
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CRL_DER_FIELD_NUMBER: _ClassVar[int]
    crl_number: int
    crl_der: bytes
    def __init__(self, crl_number: _Optional[int] = ..., crl_der: _Optional[bytes] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("member_id", "role", "identity", "certificate_serial")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    role: str
    identity: str
    certificate_serial: str
    def __init__(self, member_id: _Optional[str] = ..., role: _Optional[str] = ..., identity: _Optional[str] = ..., certificate_serial: _Optional[str] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("name", "type", "description", "sensitivity", "mask", "key_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    sensitivity: str
    mask: str
    key_type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., sensitivity: _Optional[str] = ..., mask: _Optional[str] = ..., key_type: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "department", "department_name", "title", "title_en", "description", "update_cycle", "sharing", "basis", "key_columns", "fields", "source_kind", "catalog_version", "tags", "authoritative_for")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TITLE_EN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_CYCLE_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    KEY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    AUTHORITATIVE_FOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    department: str
    department_name: str
    title: str
    title_en: str
    description: str
    update_cycle: str
    sharing: str
    basis: str
    key_columns: _containers.RepeatedScalarFieldContainer[str]
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    source_kind: str
    catalog_version: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    authoritative_for: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., department: _Optional[str] = ..., department_name: _Optional[str] = ..., title: _Optional[str] = ..., title_en: _Optional[str] = ..., description: _Optional[str] = ..., update_cycle: _Optional[str] = ..., sharing: _Optional[str] = ..., basis: _Optional[str] = ..., key_columns: _Optional[_Iterable[str]] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., source_kind: _Optional[str] = ..., catalog_version: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., authoritative_for: _Optional[_Iterable[str]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("datasets", "digest", "node_address")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    digest: str
    node_address: str
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ..., digest: _Optional[str] = ..., node_address: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("version", "changed", "datasets")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    version: int
    changed: bool
    datasets: int
    def __init__(self, version: _Optional[int] = ..., changed: _Optional[bool] = ..., datasets: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("catalog_digest", "node_address", "crl_number", "mask_keys_digest")
    CATALOG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MASK_KEYS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    catalog_digest: str
    node_address: str
    crl_number: int
    mask_keys_digest: str
    def __init__(self, catalog_digest: _Optional[str] = ..., node_address: _Optional[str] = ..., crl_number: _Optional[int] = ..., mask_keys_digest: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("republish", "crl_number", "crl_der", "interval_secs", "ticket_public_key", "mask_hash_key", "consumer_mask_keys", "mask_keys_digest")
    class ConsumerMaskKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    REPUBLISH_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CRL_DER_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECS_FIELD_NUMBER: _ClassVar[int]
    TICKET_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    MASK_HASH_KEY_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_MASK_KEYS_FIELD_NUMBER: _ClassVar[int]
    MASK_KEYS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    republish: bool
    crl_number: int
    crl_der: bytes
    interval_secs: int
    ticket_public_key: bytes
    mask_hash_key: bytes
    consumer_mask_keys: _containers.ScalarMap[str, bytes]
    mask_keys_digest: str
    def __init__(self, republish: _Optional[bool] = ..., crl_number: _Optional[int] = ..., crl_der: _Optional[bytes] = ..., interval_secs: _Optional[int] = ..., ticket_public_key: _Optional[bytes] = ..., mask_hash_key: _Optional[bytes] = ..., consumer_mask_keys: _Optional[_Mapping[str, bytes]] = ..., mask_keys_digest: _Optional[str] = ...) -> None: ...

class MaskKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MaskKeysResponse(_message.Message):
    __slots__ = ("consumer_mask_keys",)
    class ConsumerMaskKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    CONSUMER_MASK_KEYS_FIELD_NUMBER: _ClassVar[int]
    consumer_mask_keys: _containers.ScalarMap[str, bytes]
    def __init__(self, consumer_mask_keys: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("text", "department", "sharing", "key_type", "limit", "page_size", "page_token")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    text: str
    department: str
    sharing: str
    key_type: str
    limit: int
    page_size: int
    page_token: str
    def __init__(self, text: _Optional[str] = ..., department: _Optional[str] = ..., sharing: _Optional[str] = ..., key_type: _Optional[str] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("dataset", "score", "matched_fields")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    score: float
    matched_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., score: _Optional[float] = ..., matched_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "total", "next_page_token")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    total: int
    next_page_token: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., total: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class NodeSubjectRequest(_message.Message):
    __slots__ = ("key_type", "key", "include_embargoed", "requester")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBARGOED_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    key_type: str
    key: str
    include_embargoed: bool
    requester: str
    def __init__(self, key_type: _Optional[str] = ..., key: _Optional[str] = ..., include_embargoed: _Optional[bool] = ..., requester: _Optional[str] = ...) -> None: ...

class NodeSubjectResponse(_message.Message):
    __slots__ = ("accesses",)
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    accesses: _containers.RepeatedCompositeFieldContainer[SubjectAccess]
    def __init__(self, accesses: _Optional[_Iterable[_Union[SubjectAccess, _Mapping]]] = ...) -> None: ...

class NodeAuditRequest(_message.Message):
    __slots__ = ("since_ms",)
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    since_ms: int
    def __init__(self, since_ms: _Optional[int] = ...) -> None: ...

class NodeAuditResponse(_message.Message):
    __slots__ = ("records_json",)
    RECORDS_JSON_FIELD_NUMBER: _ClassVar[int]
    records_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, records_json: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("member_id", "crl_number", "catalog_digest", "datasets")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CRL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    crl_number: int
    catalog_digest: str
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, member_id: _Optional[str] = ..., crl_number: _Optional[int] = ..., catalog_digest: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("dataset", "fields", "purpose", "basis", "until", "user", "until_date")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    basis: str
    until: str
    user: str
    until_date: _date_pb2.Date
    def __init__(self, dataset: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., basis: _Optional[str] = ..., until: _Optional[str] = ..., user: _Optional[str] = ..., until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class AccessRequestRecord(_message.Message):
    __slots__ = ("id", "dataset", "owner", "consumer", "user", "fields", "purpose", "basis", "until", "status", "created_unix", "decided_unix", "decided_by", "reason", "grant_id", "overdue", "state", "created_at", "decided_at", "until_date")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    DECIDED_UNIX_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset: str
    owner: str
    consumer: str
    user: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    basis: str
    until: str
    status: str
    created_unix: int
    decided_unix: int
    decided_by: str
    reason: str
    grant_id: str
    overdue: bool
    state: RequestState
    created_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    until_date: _date_pb2.Date
    def __init__(self, id: _Optional[str] = ..., dataset: _Optional[str] = ..., owner: _Optional[str] = ..., consumer: _Optional[str] = ..., user: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., basis: _Optional[str] = ..., until: _Optional[str] = ..., status: _Optional[str] = ..., created_unix: _Optional[int] = ..., decided_unix: _Optional[int] = ..., decided_by: _Optional[str] = ..., reason: _Optional[str] = ..., grant_id: _Optional[str] = ..., overdue: _Optional[bool] = ..., state: _Optional[_Union[RequestState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class AccessRequestList(_message.Message):
    __slots__ = ("requests", "next_page_token")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AccessRequestRecord]
    next_page_token: str
    def __init__(self, requests: _Optional[_Iterable[_Union[AccessRequestRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PendingRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRequestsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ApproveRequest(_message.Message):
    __slots__ = ("request_id", "fields", "unmask", "row_filter", "quota_rows_per_day", "until", "user", "embargo_until", "masked_value_budget_per_day", "until_date", "embargo_until_date")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    UNMASK_FIELD_NUMBER: _ClassVar[int]
    ROW_FILTER_FIELD_NUMBER: _ClassVar[int]
    QUOTA_ROWS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_FIELD_NUMBER: _ClassVar[int]
    MASKED_VALUE_BUDGET_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    unmask: _containers.RepeatedScalarFieldContainer[str]
    row_filter: str
    quota_rows_per_day: int
    until: str
    user: str
    embargo_until: str
    masked_value_budget_per_day: int
    until_date: _date_pb2.Date
    embargo_until_date: _date_pb2.Date
    def __init__(self, request_id: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., unmask: _Optional[_Iterable[str]] = ..., row_filter: _Optional[str] = ..., quota_rows_per_day: _Optional[int] = ..., until: _Optional[str] = ..., user: _Optional[str] = ..., embargo_until: _Optional[str] = ..., masked_value_budget_per_day: _Optional[int] = ..., until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., embargo_until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class RefuseRequest(_message.Message):
    __slots__ = ("request_id", "reason", "user")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reason: str
    user: str
    def __init__(self, request_id: _Optional[str] = ..., reason: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class GrantField(_message.Message):
    __slots__ = ("name", "mask", "key_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    mask: str
    key_type: str
    def __init__(self, name: _Optional[str] = ..., mask: _Optional[str] = ..., key_type: _Optional[str] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("id", "dataset", "owner", "consumer", "fields", "row_filter", "purpose", "until", "quota_rows_per_day", "status", "request_id", "approved_by", "created_unix", "revoked_unix", "embargo_until", "masked_value_budget_per_day", "state", "created_at", "revoked_at", "until_date", "embargo_until_date", "revocation_reason", "revoked_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROW_FILTER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    QUOTA_ROWS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_FIELD_NUMBER: _ClassVar[int]
    MASKED_VALUE_BUDGET_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_REASON_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset: str
    owner: str
    consumer: str
    fields: _containers.RepeatedCompositeFieldContainer[GrantField]
    row_filter: str
    purpose: str
    until: str
    quota_rows_per_day: int
    status: str
    request_id: str
    approved_by: str
    created_unix: int
    revoked_unix: int
    embargo_until: str
    masked_value_budget_per_day: int
    state: GrantState
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    until_date: _date_pb2.Date
    embargo_until_date: _date_pb2.Date
    revocation_reason: str
    revoked_by: str
    def __init__(self, id: _Optional[str] = ..., dataset: _Optional[str] = ..., owner: _Optional[str] = ..., consumer: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[GrantField, _Mapping]]] = ..., row_filter: _Optional[str] = ..., purpose: _Optional[str] = ..., until: _Optional[str] = ..., quota_rows_per_day: _Optional[int] = ..., status: _Optional[str] = ..., request_id: _Optional[str] = ..., approved_by: _Optional[str] = ..., created_unix: _Optional[int] = ..., revoked_unix: _Optional[int] = ..., embargo_until: _Optional[str] = ..., masked_value_budget_per_day: _Optional[int] = ..., state: _Optional[_Union[GrantState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., embargo_until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., revocation_reason: _Optional[str] = ..., revoked_by: _Optional[str] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GrantList(_message.Message):
    __slots__ = ("grants", "next_page_token")
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    next_page_token: str
    def __init__(self, grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeGrantRequest(_message.Message):
    __slots__ = ("grant_id", "reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    reason: str
    def __init__(self, grant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AuditLogRequest(_message.Message):
    __slots__ = ("dataset", "consumer", "purpose", "since_unix", "until_unix", "limit", "owner", "page_size", "page_token", "since", "until")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    consumer: str
    purpose: str
    since_unix: int
    until_unix: int
    limit: int
    owner: str
    page_size: int
    page_token: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, dataset: _Optional[str] = ..., consumer: _Optional[str] = ..., purpose: _Optional[str] = ..., since_unix: _Optional[int] = ..., until_unix: _Optional[int] = ..., limit: _Optional[int] = ..., owner: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditQueryRow(_message.Message):
    __slots__ = ("time_ms", "query_id", "consumer", "user", "purpose", "dataset", "fields", "allowed", "rule", "reason", "rows", "duration_ms", "status", "grant_id", "filter_digest", "masked_values", "time")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MASKED_VALUES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    query_id: str
    consumer: str
    user: str
    purpose: str
    dataset: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    allowed: bool
    rule: str
    reason: str
    rows: int
    duration_ms: int
    status: str
    grant_id: str
    filter_digest: str
    masked_values: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, time_ms: _Optional[int] = ..., query_id: _Optional[str] = ..., consumer: _Optional[str] = ..., user: _Optional[str] = ..., purpose: _Optional[str] = ..., dataset: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., allowed: _Optional[bool] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., rows: _Optional[int] = ..., duration_ms: _Optional[int] = ..., status: _Optional[str] = ..., grant_id: _Optional[str] = ..., filter_digest: _Optional[str] = ..., masked_values: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditLogResponse(_message.Message):
    __slots__ = ("rows", "truncated", "next_page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[AuditQueryRow]
    truncated: bool
    next_page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[AuditQueryRow, _Mapping]]] = ..., truncated: _Optional[bool] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubjectReportRequest(_message.Message):
    __slots__ = ("key_type", "key", "include_embargoed")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBARGOED_FIELD_NUMBER: _ClassVar[int]
    key_type: str
    key: str
    include_embargoed: bool
    def __init__(self, key_type: _Optional[str] = ..., key: _Optional[str] = ..., include_embargoed: _Optional[bool] = ...) -> None: ...

class SubjectAccess(_message.Message):
    __slots__ = ("time_ms", "owner", "dataset", "consumer", "user", "purpose", "query_id", "embargo_until", "time", "embargo_until_date")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    EMBARGO_UNTIL_DATE_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    owner: str
    dataset: str
    consumer: str
    user: str
    purpose: str
    query_id: str
    embargo_until: str
    time: _timestamp_pb2.Timestamp
    embargo_until_date: _date_pb2.Date
    def __init__(self, time_ms: _Optional[int] = ..., owner: _Optional[str] = ..., dataset: _Optional[str] = ..., consumer: _Optional[str] = ..., user: _Optional[str] = ..., purpose: _Optional[str] = ..., query_id: _Optional[str] = ..., embargo_until: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., embargo_until_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class DepartmentStatus(_message.Message):
    __slots__ = ("department", "status", "detail")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    department: str
    status: str
    detail: str
    def __init__(self, department: _Optional[str] = ..., status: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class SubjectReportResponse(_message.Message):
    __slots__ = ("accesses", "departments")
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENTS_FIELD_NUMBER: _ClassVar[int]
    accesses: _containers.RepeatedCompositeFieldContainer[SubjectAccess]
    departments: _containers.RepeatedCompositeFieldContainer[DepartmentStatus]
    def __init__(self, accesses: _Optional[_Iterable[_Union[SubjectAccess, _Mapping]]] = ..., departments: _Optional[_Iterable[_Union[DepartmentStatus, _Mapping]]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("kind", "since_unix", "until_unix", "since", "until")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    since_unix: int
    until_unix: int
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., since_unix: _Optional[int] = ..., until_unix: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("cells", "values")
    CELLS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedCompositeFieldContainer[ReportValue]
    def __init__(self, cells: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[_Union[ReportValue, _Mapping]]] = ...) -> None: ...

class ReportValue(_message.Message):
    __slots__ = ("integer", "number", "text")
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    integer: int
    number: float
    text: str
    def __init__(self, integer: _Optional[int] = ..., number: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("columns", "rows", "column_types")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMN_TYPES_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[ReportRow]
    column_types: _containers.RepeatedScalarFieldContainer[ReportColumnType]
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[ReportRow, _Mapping]]] = ..., column_types: _Optional[_Iterable[_Union[ReportColumnType, str]]] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("node", "since_unix", "since")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    node: str
    since_unix: int
    since: _timestamp_pb2.Timestamp
    def __init__(self, node: _Optional[str] = ..., since_unix: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Discrepancy(_message.Message):
    __slots__ = ("kind", "query_id", "detail", "time_ms", "time")
    KIND_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    query_id: str
    detail: str
    time_ms: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., query_id: _Optional[str] = ..., detail: _Optional[str] = ..., time_ms: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("authorized", "served", "discrepancies", "explained")
    class ExplainedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    DISCREPANCIES_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_FIELD_NUMBER: _ClassVar[int]
    authorized: int
    served: int
    discrepancies: _containers.RepeatedCompositeFieldContainer[Discrepancy]
    explained: _containers.ScalarMap[str, int]
    def __init__(self, authorized: _Optional[int] = ..., served: _Optional[int] = ..., discrepancies: _Optional[_Iterable[_Union[Discrepancy, _Mapping]]] = ..., explained: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Dispute(_message.Message):
    __slots__ = ("id", "dataset", "owner", "filed_by", "key", "field", "value_seen", "proposed", "note", "status", "resolution_note", "resolved_by", "filed_unix", "resolved_unix", "state", "filed_at", "resolved_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    FILED_BY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_SEEN_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTE_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    FILED_UNIX_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_UNIX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset: str
    owner: str
    filed_by: str
    key: str
    field: str
    value_seen: str
    proposed: str
    note: str
    status: str
    resolution_note: str
    resolved_by: str
    filed_unix: int
    resolved_unix: int
    state: DisputeState
    filed_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., dataset: _Optional[str] = ..., owner: _Optional[str] = ..., filed_by: _Optional[str] = ..., key: _Optional[str] = ..., field: _Optional[str] = ..., value_seen: _Optional[str] = ..., proposed: _Optional[str] = ..., note: _Optional[str] = ..., status: _Optional[str] = ..., resolution_note: _Optional[str] = ..., resolved_by: _Optional[str] = ..., filed_unix: _Optional[int] = ..., resolved_unix: _Optional[int] = ..., state: _Optional[_Union[DisputeState, str]] = ..., filed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FileDisputeRequest(_message.Message):
    __slots__ = ("dataset", "key", "field", "value_seen", "proposed", "note", "user")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_SEEN_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    key: str
    field: str
    value_seen: str
    proposed: str
    note: str
    user: str
    def __init__(self, dataset: _Optional[str] = ..., key: _Optional[str] = ..., field: _Optional[str] = ..., value_seen: _Optional[str] = ..., proposed: _Optional[str] = ..., note: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class ListDisputesRequest(_message.Message):
    __slots__ = ("status", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DisputeList(_message.Message):
    __slots__ = ("disputes", "next_page_token")
    DISPUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    disputes: _containers.RepeatedCompositeFieldContainer[Dispute]
    next_page_token: str
    def __init__(self, disputes: _Optional[_Iterable[_Union[Dispute, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveDisputeRequest(_message.Message):
    __slots__ = ("id", "outcome", "note", "user")
    ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    id: str
    outcome: str
    note: str
    user: str
    def __init__(self, id: _Optional[str] = ..., outcome: _Optional[str] = ..., note: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class LookupTargetsRequest(_message.Message):
    __slots__ = ("key_type", "datasets")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    key_type: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_type: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ...) -> None: ...

class LookupTarget(_message.Message):
    __slots__ = ("dataset", "department", "key_field", "key_mask")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_FIELD_NUMBER: _ClassVar[int]
    KEY_MASK_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    department: str
    key_field: str
    key_mask: str
    def __init__(self, dataset: _Optional[str] = ..., department: _Optional[str] = ..., key_field: _Optional[str] = ..., key_mask: _Optional[str] = ...) -> None: ...

class LookupTargetList(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[LookupTarget]
    def __init__(self, targets: _Optional[_Iterable[_Union[LookupTarget, _Mapping]]] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("key_type", "key", "purpose", "user", "deadline_ms", "datasets")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    key_type: str
    key: str
    purpose: str
    user: str
    deadline_ms: int
    datasets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_type: _Optional[str] = ..., key: _Optional[str] = ..., purpose: _Optional[str] = ..., user: _Optional[str] = ..., deadline_ms: _Optional[int] = ..., datasets: _Optional[_Iterable[str]] = ...) -> None: ...

class DatasetAnswer(_message.Message):
    __slots__ = ("target", "status", "detail", "rows", "arrow_ipc", "elapsed_ms")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    target: LookupTarget
    status: LookupStatus
    detail: str
    rows: int
    arrow_ipc: bytes
    elapsed_ms: int
    def __init__(self, target: _Optional[_Union[LookupTarget, _Mapping]] = ..., status: _Optional[_Union[LookupStatus, str]] = ..., detail: _Optional[str] = ..., rows: _Optional[int] = ..., arrow_ipc: _Optional[bytes] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("key_type", "key", "answers", "elapsed_ms")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    key_type: str
    key: str
    answers: _containers.RepeatedCompositeFieldContainer[DatasetAnswer]
    elapsed_ms: int
    def __init__(self, key_type: _Optional[str] = ..., key: _Optional[str] = ..., answers: _Optional[_Iterable[_Union[DatasetAnswer, _Mapping]]] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...

class BatchLookupStart(_message.Message):
    __slots__ = ("key_type", "purpose", "user", "datasets", "chunk_size", "parallel", "query_deadline_ms")
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    key_type: str
    purpose: str
    user: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    chunk_size: int
    parallel: int
    query_deadline_ms: int
    def __init__(self, key_type: _Optional[str] = ..., purpose: _Optional[str] = ..., user: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., chunk_size: _Optional[int] = ..., parallel: _Optional[int] = ..., query_deadline_ms: _Optional[int] = ...) -> None: ...

class KeyList(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchLookupRequest(_message.Message):
    __slots__ = ("start", "keys")
    START_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    start: BatchLookupStart
    keys: KeyList
    def __init__(self, start: _Optional[_Union[BatchLookupStart, _Mapping]] = ..., keys: _Optional[_Union[KeyList, _Mapping]] = ...) -> None: ...

class BatchRows(_message.Message):
    __slots__ = ("target", "rows", "arrow_ipc")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    target: int
    rows: int
    arrow_ipc: bytes
    def __init__(self, target: _Optional[int] = ..., rows: _Optional[int] = ..., arrow_ipc: _Optional[bytes] = ...) -> None: ...

class ChunkDone(_message.Message):
    __slots__ = ("target", "keys", "status", "detail")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    target: int
    keys: int
    status: LookupStatus
    detail: str
    def __init__(self, target: _Optional[int] = ..., keys: _Optional[int] = ..., status: _Optional[_Union[LookupStatus, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class RejectedKey(_message.Message):
    __slots__ = ("key", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    reason: str
    def __init__(self, key: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BatchLookupEvent(_message.Message):
    __slots__ = ("targets", "rows", "chunk_done", "rejected")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DONE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    targets: LookupTargetList
    rows: BatchRows
    chunk_done: ChunkDone
    rejected: RejectedKey
    def __init__(self, targets: _Optional[_Union[LookupTargetList, _Mapping]] = ..., rows: _Optional[_Union[BatchRows, _Mapping]] = ..., chunk_done: _Optional[_Union[ChunkDone, _Mapping]] = ..., rejected: _Optional[_Union[RejectedKey, _Mapping]] = ...) -> None: ...
