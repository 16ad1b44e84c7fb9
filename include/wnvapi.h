/*
 * wnvapi.h - the Windows Network Virtualization notification API, version
 * 1.0, for wnv on Linux: the documented names, types, values and structure
 * layouts, so a program written from Microsoft's documentation compiles
 * unchanged (C or C++). Link with -lwnvapi -pthread.
 *
 * WnvOpen connects to wnvd's notification socket: $WNV_NOTIFY_SOCKET, else
 * /run/wnv/notify.sock. The Win32 names it needs besides the API (types,
 * OVERLAPPED, events, waits, CloseHandle, error codes, IN_ADDR...) come from
 * wnv_win32compat.h, which explains how to combine it with another Win32
 * compatibility layer.
 *
 * Differences from Windows a program may notice:
 *   - Address families are the platform's AF_INET / AF_INET6 (Linux's
 *     AF_INET6 is 10, not 23): the library translates them.
 *   - Events are process-local and unnamed; DWORD and ULONG are 32-bit
 *     unsigned int, so print them with %u (or cast for %lu).
 */
#ifndef __WNV_API_INCLUDED_
#define __WNV_API_INCLUDED_

#include <stddef.h>

#include "wnv_win32compat.h"

#ifdef __cplusplus
#define WNV_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define WNV_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
/* The layouts below are Windows' only with these; another layer may differ. */
WNV_STATIC_ASSERT(sizeof(UCHAR) == 1 && sizeof(USHORT) == 2 && sizeof(ULONG) == 4,
                  "wnvapi.h needs 8-, 16- and 32-bit UCHAR, USHORT and ULONG");
WNV_STATIC_ASSERT(sizeof(HANDLE) == sizeof(void *) && sizeof(OVERLAPPED) == 4 * sizeof(void *) &&
                      offsetof(OVERLAPPED, hEvent) == 3 * sizeof(void *),
                  "wnvapi.h needs Windows' OVERLAPPED: Internal, InternalHigh, Offset/Pointer, HANDLE hEvent");

#define WNV_API_MAJOR_VERSION_1 1
#define WNV_API_MINOR_VERSION_0 0

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

/* In network byte order; an IPv4 address uses IP.v4 (the first 4 bytes). */
typedef struct _WNV_IP_ADDRESS {
    union {
        IN_ADDR v4;
        IN6_ADDR v6;
        UCHAR Addr[16];
    } IP;
} WNV_IP_ADDRESS, *PWNV_IP_ADDRESS;

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

/* PAFamily is AF_UNSPEC (0) when no PA is known (an outbound miss). */
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

#ifndef WNV_KERNEL_MODE

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a handle to the host's notification API; NULL on failure
 * (GetLastError: ERROR_OPEN_FAILED, ERROR_NOT_ENOUGH_MEMORY). Close it with
 * CloseHandle: its requests in flight complete with ERROR_OPERATION_ABORTED
 * (and their events are set) before CloseHandle returns. */
HANDLE WINAPI WnvOpen(void);

/* Requests events of NotificationParam->NotificationType into its Buffer.
 * Overlapped NULL: blocks until at least one event exists and returns its
 * status with *BytesTransferred set. Otherwise returns ERROR_IO_PENDING (or
 * an error at once); completion is reported as for any overlapped I/O
 * (hEvent, the handle, GetOverlappedResult, CancelIoEx). Returns
 * ERROR_INVALID_PARAMETER for a version other than 1.0, an unknown type, a
 * Buffer smaller than one structure of the type, or a second outstanding
 * request of the same type on the handle; ERROR_INVALID_HANDLE for a bad
 * handle or hEvent; ERROR_OPERATION_ABORTED once cancelled or closed. */
DWORD WINAPI WnvRequestNotification(HANDLE WnvHandle, PWNV_NOTIFICATION_PARAM NotificationParam,
                                    LPOVERLAPPED Overlapped, PULONG BytesTransferred);

/* wnv extension: how many events of Type the server dropped for this handle
 * because its queue was full, as of the last completion of that type. Any
 * increase means events were lost: resync the full policy. */
DWORD WINAPI WnvGetDroppedNotifications(HANDLE WnvHandle, WNV_NOTIFICATION_TYPE Type, ULONGLONG *Dropped);

#ifdef __cplusplus
}
#endif

#endif /* !WNV_KERNEL_MODE */

#endif /* __WNV_API_INCLUDED_ */
