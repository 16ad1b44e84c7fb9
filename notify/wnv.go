// Package notify is the notification API of the host module: the event hub the
// switch and the daemon raise events into, the binary codec of the original
// WNV_* structures, the Unix-socket server, and the Go client (WnvOpen /
// WnvRequestNotification semantics).
package notify

import (
	"fmt"
)

// API version carried in every request header.
const (
	MajorVersion = 1
	MinorVersion = 0
)

// NotificationType is WNV_NOTIFICATION_TYPE.
type NotificationType int32

const (
	PolicyMismatchType  NotificationType = 0
	RedirectType        NotificationType = 1
	ObjectChangeType    NotificationType = 2
	NotificationTypeMax NotificationType = 3
)

var typeNames = [...]string{"policy-mismatch", "redirect", "object-change"}

// String returns the CLI name of the type (policy-mismatch, redirect,
// object-change).
func (t NotificationType) String() string {
	if t >= 0 && t < NotificationTypeMax {
		return typeNames[t]
	}
	return fmt.Sprintf("NotificationType(%d)", int32(t))
}

// ParseNotificationType accepts the CLI names returned by String.
func ParseNotificationType(s string) (NotificationType, error) {
	for i, n := range typeNames {
		if n == s {
			return NotificationType(i), nil
		}
	}
	return 0, fmt.Errorf("notification type %q is unknown: use policy-mismatch, redirect or object-change", s)
}

// ObjectType is WNV_OBJECT_TYPE: which half of an object-change union is set.
type ObjectType int32

const (
	ProviderAddressType ObjectType = 0
	CustomerAddressType ObjectType = 1
	ObjectTypeMax       ObjectType = 2
)

func (t ObjectType) String() string {
	switch t {
	case ProviderAddressType:
		return "provider-address"
	case CustomerAddressType:
		return "customer-address"
	}
	return fmt.Sprintf("ObjectType(%d)", int32(t))
}

// CAReason is WNV_CA_NOTIFICATION_TYPE.
type CAReason uint32

const (
	CustomerAddressAdded   CAReason = 0
	CustomerAddressDeleted CAReason = 1
	CustomerAddressMoved   CAReason = 2
	CustomerAddressMax     CAReason = 3
)

func (r CAReason) String() string {
	switch r {
	case CustomerAddressAdded:
		return "added"
	case CustomerAddressDeleted:
		return "deleted"
	case CustomerAddressMoved:
		return "moved"
	}
	return fmt.Sprintf("CAReason(%d)", uint32(r))
}

// DADState is NL_DAD_STATE, the duplicate address detection state of a PA.
type DADState uint32

const (
	DADInvalid    DADState = 0
	DADTentative  DADState = 1
	DADDuplicate  DADState = 2
	DADDeprecated DADState = 3
	DADPreferred  DADState = 4
)

func (s DADState) String() string {
	switch s {
	case DADInvalid:
		return "Invalid"
	case DADTentative:
		return "Tentative"
	case DADDuplicate:
		return "Duplicate"
	case DADDeprecated:
		return "Deprecated"
	case DADPreferred:
		return "Preferred"
	}
	return fmt.Sprintf("DADState(%d)", uint32(s))
}

// Address families as the original API encodes them (Windows values).
const (
	AFUnspec uint16 = 0
	AFInet   uint16 = 2
	AFInet6  uint16 = 23
)

// Errno is a Windows error code returned by the API.
type Errno uint32

const (
	ErrSuccess          Errno = 0
	ErrInvalidParameter Errno = 87
	ErrOperationAborted Errno = 995
	ErrIOIncomplete     Errno = 996
	ErrIOPending        Errno = 997
)

func (e Errno) Error() string {
	switch e {
	case ErrSuccess:
		return "ERROR_SUCCESS (0)"
	case ErrInvalidParameter:
		return "ERROR_INVALID_PARAMETER (87)"
	case ErrOperationAborted:
		return "ERROR_OPERATION_ABORTED (995)"
	case ErrIOIncomplete:
		return "ERROR_IO_INCOMPLETE (996)"
	case ErrIOPending:
		return "ERROR_IO_PENDING (997)"
	}
	return fmt.Sprintf("Windows error %d", uint32(e))
}

// ParamError is an ERROR_INVALID_PARAMETER with the reason spelled out. It
// matches ErrInvalidParameter with errors.Is.
type ParamError struct{ Reason string }

func (e *ParamError) Error() string { return e.Reason + " (ERROR_INVALID_PARAMETER, 87)" }

func (e *ParamError) Is(target error) bool { return target == ErrInvalidParameter }

// ObjectHeader is WNV_OBJECT_HEADER.
type ObjectHeader struct {
	MajorVersion uint8
	MinorVersion uint8
	Size         uint32
}

// NotificationParam is WNV_NOTIFICATION_PARAM. Header.Size is the number of
// bytes of Buffer the server may fill (it must not exceed len(Buffer)).
type NotificationParam struct {
	Header               ObjectHeader
	NotificationType     NotificationType
	PendingNotifications uint32
	Buffer               []byte
}

// NewParam returns a version 1.0 request for typ over buf.
func NewParam(typ NotificationType, buf []byte) *NotificationParam {
	return &NotificationParam{
		Header:           ObjectHeader{MajorVersion: MajorVersion, MinorVersion: MinorVersion, Size: uint32(len(buf))},
		NotificationType: typ,
		Buffer:           buf,
	}
}

// validate applies the server's rules for a request: version 1.0, a known
// type, a buffer holding at least one structure of that type.
func validate(h ObjectHeader, typ NotificationType) error {
	if h.MajorVersion != MajorVersion || h.MinorVersion != MinorVersion {
		return &ParamError{fmt.Sprintf("Header version %d.%d is not supported: use %d.%d", h.MajorVersion, h.MinorVersion, MajorVersion, MinorVersion)}
	}
	if typ < 0 || typ >= NotificationTypeMax {
		return &ParamError{fmt.Sprintf("NotificationType %d is unknown: use 0 (policy mismatch), 1 (redirect) or 2 (object change)", int32(typ))}
	}
	if min := RecordSize(typ); h.Size < uint32(min) {
		return &ParamError{fmt.Sprintf("Header.Size %d is smaller than one %s structure: use at least %d bytes", h.Size, typ, min)}
	}
	return nil
}
