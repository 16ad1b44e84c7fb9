/*
 * wnvapi.h - the Windows Network Virtualization notification API (version 1.0)
 * for wnv on Linux: the original names, types, values and structure layouts,
 * served by wnvd over a Unix socket and implemented by libwnvapi (-lwnvapi
 * -pthread).
 *
 * Linux shape of the Windows pieces:
 *   - HANDLE is an opaque pointer returned by WnvOpen (NULL on failure) and
 *     released with CloseHandle. WnvOpen connects to $WNV_NOTIFY_SOCKET, else
 *     /run/wnv/notify.sock.
 *   - Asynchronous requests use OVERLAPPED below: set hEvent to an eventfd
 *     (eventfd(0, EFD_CLOEXEC)) or -1. WnvRequestNotification returns
 *     ERROR_IO_PENDING; on completion the library fills the buffer, sets
 *     PendingNotifications, Internal (the status) and InternalHigh (bytes),
 *     then adds 1 to the eventfd, so hEvent can be poll()ed for POLLIN. Read
 *     the eventfd to reset it and call GetOverlappedResult for the result.
 *     The param, its Buffer and the OVERLAPPED must stay valid until then.
 *   - Address families use the Windows values WNV_AF_INET (2) and
 *     WNV_AF_INET6 (23); Linux's AF_INET6 is 10, hence the prefixed names.
 *   - Errors: functions returning ULONG return the code; BOOL functions set
 *     the calling thread's last error, read with GetLastError.
 */
#ifndef WNVAPI_H
#define WNVAPI_H

#include <stdint.h>
#include <netinet/in.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *HANDLE;
typedef uint8_t UCHAR, *PUCHAR;
typedef uint16_t USHORT;
typedef uint32_t ULONG, *PULONG;
typedef uint64_t ULONGLONG;
typedef uintptr_t ULONG_PTR;
typedef int BOOL;
typedef USHORT ADDRESS_FAMILY;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

#define WNV_AF_UNSPEC 0  /* no address: e.g. the PA of an outbound miss */
#define WNV_AF_INET 2
#define WNV_AF_INET6 23

#define ERROR_SUCCESS 0
#define ERROR_INVALID_HANDLE 6
#define ERROR_NOT_ENOUGH_MEMORY 8
#define ERROR_INVALID_PARAMETER 87
#define ERROR_OPEN_FAILED 110
#define ERROR_OPERATION_ABORTED 995
#define ERROR_IO_INCOMPLETE 996
#define ERROR_IO_PENDING 997
#define ERROR_NOT_FOUND 1168

#define WNV_API_MAJOR_VERSION 1
#define WNV_API_MINOR_VERSION 0

typedef enum _WNV_NOTIFICATION_TYPE {
    WnvPolicyMismatchType = 0,
    WnvRedirectType = 1,
    WnvObjectChangeType = 2,
    WnvNotificationTypeMax = 3
} WNV_NOTIFICATION_TYPE, *PWNV_NOTIFICATION_TYPE;

typedef enum _WNV_OBJECT_TYPE {
    WnvProviderAddressType = 0,
    WnvCustomerAddressType = 1,
    WnvObjectTypeMax = 2
} WNV_OBJECT_TYPE, *PWNV_OBJECT_TYPE;

typedef enum _WNV_CA_NOTIFICATION_TYPE {
    WnvCustomerAddressAdded = 0,
    WnvCustomerAddressDeleted = 1,
    WnvCustomerAddressMoved = 2,
    WnvCustomerAddressMax = 3
} WNV_CA_NOTIFICATION_TYPE, *PWNV_CA_NOTIFICATION_TYPE;

typedef enum _NL_DAD_STATE {
    NldsInvalid = 0,
    NldsTentative = 1,
    NldsDuplicate = 2,
    NldsDeprecated = 3,
    NldsPreferred = 4
} NL_DAD_STATE;

/* An address in network byte order; IPv4 uses the first 4 bytes. */
typedef union _WNV_IP_ADDRESS {
    struct in_addr v4;
    struct in6_addr v6;
    UCHAR Addr[16];
} WNV_IP_ADDRESS, *PWNV_IP_ADDRESS;

typedef union _DL_EUI48 {
    UCHAR Byte[6];
} DL_EUI48;

typedef struct _WNV_OBJECT_HEADER {
    UCHAR MajorVersion;
    UCHAR MinorVersion;
    ULONG Size;
} WNV_OBJECT_HEADER, *PWNV_OBJECT_HEADER;

/* Header.Size is the size in bytes of Buffer. */
typedef struct _WNV_NOTIFICATION_PARAM {
    WNV_OBJECT_HEADER Header;
    WNV_NOTIFICATION_TYPE NotificationType;
    ULONG PendingNotifications;
    PUCHAR Buffer;
} WNV_NOTIFICATION_PARAM, *PWNV_NOTIFICATION_PARAM;

/* PAFamily is WNV_AF_UNSPEC when no PA is known (an outbound miss). */
typedef struct _WNV_POLICY_MISMATCH_PARAM {
    ADDRESS_FAMILY CAFamily;
    ADDRESS_FAMILY PAFamily;
    ULONG VirtualSubnetId;
    WNV_IP_ADDRESS CA;
    WNV_IP_ADDRESS PA;
} WNV_POLICY_MISMATCH_PARAM, *PWNV_POLICY_MISMATCH_PARAM;

typedef struct _WNV_REDIRECT_PARAM {
    ADDRESS_FAMILY CAFamily;
    ADDRESS_FAMILY PAFamily;
    ADDRESS_FAMILY NewPAFamily;
    ULONG VirtualSubnetId;
    WNV_IP_ADDRESS CA;
    WNV_IP_ADDRESS PA;
    WNV_IP_ADDRESS NewPA;
} WNV_REDIRECT_PARAM, *PWNV_REDIRECT_PARAM;

typedef struct _WNV_PROVIDER_ADDRESS_CHANGE_PARAM {
    ADDRESS_FAMILY PAFamily;
    WNV_IP_ADDRESS PA;
    NL_DAD_STATE AddressState;
} WNV_PROVIDER_ADDRESS_CHANGE_PARAM, *PWNV_PROVIDER_ADDRESS_CHANGE_PARAM;

typedef struct _WNV_CUSTOMER_ADDRESS_CHANGE_PARAM {
    DL_EUI48 MACAddress;
    ADDRESS_FAMILY CAFamily;
    WNV_IP_ADDRESS CA;
    ULONG VirtualSubnetId;
    ADDRESS_FAMILY PAFamily;
    WNV_IP_ADDRESS PA;
    WNV_CA_NOTIFICATION_TYPE NotificationReason;
} WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, *PWNV_CUSTOMER_ADDRESS_CHANGE_PARAM;

typedef struct _WNV_OBJECT_CHANGE_PARAM {
    WNV_OBJECT_TYPE ObjectType;
    union {
        WNV_PROVIDER_ADDRESS_CHANGE_PARAM ProviderAddressChange;
        WNV_CUSTOMER_ADDRESS_CHANGE_PARAM CustomerAddressChange;
    } ObjectParam;
} WNV_OBJECT_CHANGE_PARAM, *PWNV_OBJECT_CHANGE_PARAM;

/* An asynchronous request (see the top of this file). Zero it, set hEvent. */
typedef struct _OVERLAPPED {
    ULONG_PTR Internal;     /* ERROR_IO_PENDING while in flight, then the status */
    ULONG_PTR InternalHigh; /* bytes transferred */
    void *Pointer;          /* reserved for the library */
    int hEvent;             /* eventfd signalled on completion, or -1 */
} OVERLAPPED, *LPOVERLAPPED;

/* Opens a handle to the host's notification API; NULL on failure
 * (GetLastError: ERROR_OPEN_FAILED, ERROR_NOT_ENOUGH_MEMORY). */
HANDLE WnvOpen(void);

/* Requests events of param->NotificationType into param->Buffer.
 * ov == NULL: blocks until at least one event exists, then returns its
 * status and sets *bytesTransferred. ov != NULL: returns ERROR_IO_PENDING
 * (or an error at once) and completes as described above; bytesTransferred
 * may be NULL. Returns ERROR_INVALID_PARAMETER for a version other than 1.0,
 * an unknown type, a Buffer smaller than one structure of the type, or a
 * second outstanding request of the same type on the handle, and
 * ERROR_OPERATION_ABORTED when the request is cancelled or the handle closed. */
ULONG WnvRequestNotification(HANDLE h, PWNV_NOTIFICATION_PARAM param, LPOVERLAPPED ov,
                             ULONG *bytesTransferred);

/* Result of an asynchronous request: TRUE with *bytes set on success; FALSE
 * with GetLastError() = the request's error, or ERROR_IO_INCOMPLETE if wait is
 * FALSE and it is still in flight. */
BOOL GetOverlappedResult(HANDLE h, LPOVERLAPPED ov, ULONG *bytes, BOOL wait);

/* Cancels the request using ov (all of the handle's requests if ov is NULL):
 * it completes with ERROR_OPERATION_ABORTED unless it already completed.
 * FALSE with ERROR_NOT_FOUND if no such request is in flight. */
BOOL CancelIoEx(HANDLE h, LPOVERLAPPED ov);

/* Closes the handle; its requests in flight complete with
 * ERROR_OPERATION_ABORTED (and their events are signalled) before it returns. */
BOOL CloseHandle(HANDLE h);

/* The calling thread's last error. */
ULONG GetLastError(void);

/* wnv extension: how many events of type the server dropped for this handle
 * because its queue was full, as of the last completion of that type. Any
 * increase means events were lost: resync the full policy. */
ULONG WnvGetDroppedNotifications(HANDLE h, WNV_NOTIFICATION_TYPE type, ULONGLONG *dropped);

#ifdef __cplusplus
}
#endif

#endif /* WNVAPI_H */
