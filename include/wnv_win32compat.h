/*
 * wnv_win32compat.h - the Win32 names a program written from Microsoft's
 * documentation of the WNV API uses besides the API itself, for Linux:
 *   - error codes;
 *   - base types, WINAPI, OVERLAPPED, and the handle, event and wait calls
 *     that libwnvapi implements: CloseHandle, GetLastError,
 *     GetOverlappedResult, CancelIoEx, CreateEvent(A/W), SetEvent,
 *     ResetEvent, WaitForSingleObject, WaitForMultipleObjects;
 *   - the Windows network types the WNV structures are made of: IN_ADDR,
 *     IN6_ADDR, ADDRESS_FAMILY, DL_EUI48, NL_DAD_STATE.
 * wnvapi.h includes it; there is no need to include it directly.
 *
 * Living with another Win32 compatibility layer: include that layer first.
 * Every macro here is under its own #ifndef, so the layer's definitions
 * win. If it defines _WINDEF_ or _MINWINDEF_ (as Wine's and MinGW's
 * windef.h do), the base types, OVERLAPPED and the handle calls here are
 * left to it (its types must have Windows' sizes and OVERLAPPED its layout,
 * which wnvapi.h checks). Define WNV_NO_WIN32_COMPAT to leave every name
 * here to the includer.
 */
#ifndef WNV_WIN32COMPAT_H
#define WNV_WIN32COMPAT_H

#ifndef WNV_NO_WIN32_COMPAT

#include <stddef.h>
#include <stdint.h>
#include <string.h>     /* memset, for ZeroMemory */
#include <sys/socket.h> /* AF_INET, AF_INET6: the library reports families in the platform's values */

/* Win32 error codes (winerror.h values). */
#ifndef ERROR_SUCCESS
#define ERROR_SUCCESS 0
#endif
#ifndef ERROR_INVALID_HANDLE
#define ERROR_INVALID_HANDLE 6
#endif
#ifndef ERROR_NOT_ENOUGH_MEMORY
#define ERROR_NOT_ENOUGH_MEMORY 8
#endif
#ifndef ERROR_NOT_SUPPORTED
#define ERROR_NOT_SUPPORTED 50
#endif
#ifndef ERROR_INVALID_PARAMETER
#define ERROR_INVALID_PARAMETER 87
#endif
#ifndef ERROR_OPEN_FAILED
#define ERROR_OPEN_FAILED 110
#endif
#ifndef ERROR_OPERATION_ABORTED
#define ERROR_OPERATION_ABORTED 995
#endif
#ifndef ERROR_IO_INCOMPLETE
#define ERROR_IO_INCOMPLETE 996
#endif
#ifndef ERROR_IO_PENDING
#define ERROR_IO_PENDING 997
#endif
#ifndef ERROR_NOT_FOUND
#define ERROR_NOT_FOUND 1168
#endif

#if !defined(_WINDEF_) && !defined(_MINWINDEF_)

#ifdef __cplusplus
extern "C" {
#endif

/* Windows is LLP64: DWORD and ULONG are 32 bits, hence not unsigned long. */
typedef uint8_t BYTE, UCHAR, *PUCHAR;
typedef uint16_t USHORT;
typedef uint32_t DWORD, *LPDWORD, ULONG, *PULONG;
typedef unsigned long long ULONGLONG;
typedef uintptr_t ULONG_PTR;
typedef int BOOL;
typedef void *PVOID, *LPVOID, *HANDLE;
typedef const char *LPCSTR;
typedef wchar_t WCHAR; /* lets L"..." literals through; names are rejected anyway */
typedef const WCHAR *LPCWSTR;

#ifndef WINAPI
#define WINAPI /* one calling convention on Linux */
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#ifndef INVALID_HANDLE_VALUE
#define INVALID_HANDLE_VALUE ((HANDLE)(ULONG_PTR)-1)
#endif
#ifndef INFINITE
#define INFINITE 0xFFFFFFFFu
#endif
#ifndef MAXIMUM_WAIT_OBJECTS
#define MAXIMUM_WAIT_OBJECTS 64
#endif
#ifndef WAIT_OBJECT_0
#define WAIT_OBJECT_0 0u
#endif
#ifndef WAIT_TIMEOUT
#define WAIT_TIMEOUT 258u
#endif
#ifndef WAIT_FAILED
#define WAIT_FAILED 0xFFFFFFFFu
#endif
#ifndef STATUS_PENDING
#define STATUS_PENDING 0x103u
#endif
#ifndef ZeroMemory
#define ZeroMemory(p, n) memset((p), 0, (n))
#endif

/* Internal is STATUS_PENDING while the request is in flight, then its Win32
 * status; InternalHigh is the bytes transferred. Offset and Pointer are
 * unused. hEvent, if not NULL, is an event from CreateEvent that the request
 * resets when it starts and sets when it completes; with NULL, completion is
 * signalled on the file handle (WaitForSingleObject, GetOverlappedResult). */
typedef struct _OVERLAPPED {
    ULONG_PTR Internal;
    ULONG_PTR InternalHigh;
    __extension__ union {
        __extension__ struct {
            DWORD Offset;
            DWORD OffsetHigh;
        };
        PVOID Pointer;
    };
    HANDLE hEvent;
} OVERLAPPED, *LPOVERLAPPED;

#ifndef HasOverlappedIoCompleted
#define HasOverlappedIoCompleted(ov) ((ov)->Internal != STATUS_PENDING)
#endif

typedef struct _SECURITY_ATTRIBUTES {
    DWORD nLength;
    LPVOID lpSecurityDescriptor;
    BOOL bInheritHandle;
} SECURITY_ATTRIBUTES, *PSECURITY_ATTRIBUTES, *LPSECURITY_ATTRIBUTES;

/* Closes a WnvOpen handle or an event. */
BOOL WINAPI CloseHandle(HANDLE hObject);
/* The calling thread's last error, set by the BOOL and wait functions. */
DWORD WINAPI GetLastError(void);
BOOL WINAPI GetOverlappedResult(HANDLE hFile, LPOVERLAPPED lpOverlapped, LPDWORD lpNumberOfBytesTransferred,
                                BOOL bWait);
BOOL WINAPI CancelIoEx(HANDLE hFile, LPOVERLAPPED lpOverlapped);
/* Unnamed events only: a name fails with ERROR_NOT_SUPPORTED. Security
 * attributes are ignored (there is no other process to share with). */
HANDLE WINAPI CreateEventA(LPSECURITY_ATTRIBUTES lpEventAttributes, BOOL bManualReset, BOOL bInitialState,
                           LPCSTR lpName);
HANDLE WINAPI CreateEventW(LPSECURITY_ATTRIBUTES lpEventAttributes, BOOL bManualReset, BOOL bInitialState,
                           LPCWSTR lpName);
#ifndef CreateEvent
#ifdef UNICODE
#define CreateEvent CreateEventW
#else
#define CreateEvent CreateEventA
#endif
#endif
BOOL WINAPI SetEvent(HANDLE hEvent);
BOOL WINAPI ResetEvent(HANDLE hEvent);
/* Waits on events and WnvOpen handles (signalled when a request completes,
 * reset when one starts). */
DWORD WINAPI WaitForSingleObject(HANDLE hHandle, DWORD dwMilliseconds);
DWORD WINAPI WaitForMultipleObjects(DWORD nCount, const HANDLE *lpHandles, BOOL bWaitAll, DWORD dwMilliseconds);

#ifdef __cplusplus
}
#endif

#endif /* !_WINDEF_ && !_MINWINDEF_ */

/*
 * Network types, with fixed-width members so their layout does not depend on
 * another layer's base types. The struct tags differ from Windows' (in_addr,
 * in6_addr) because Linux owns those.
 */
typedef uint16_t ADDRESS_FAMILY;

/* Windows reaches s_addr through a macro over S_un; a member keeps Linux's
 * struct in_addr (whose s_addr such a macro would break) intact. */
__extension__ typedef struct _WNV_IN_ADDR {
    __extension__ union {
        union {
            struct {
                uint8_t s_b1, s_b2, s_b3, s_b4;
            } S_un_b;
            struct {
                uint16_t s_w1, s_w2;
            } S_un_w;
            uint32_t S_addr;
        } S_un;
        uint32_t s_addr;
    };
} IN_ADDR, *PIN_ADDR;

typedef struct _WNV_IN6_ADDR {
    union {
        uint8_t Byte[16];
        uint16_t Word[8];
    } u;
} IN6_ADDR, *PIN6_ADDR;

typedef union _DL_OUI {
    uint8_t Byte[3];
    __extension__ struct {
        uint8_t Group : 1;
        uint8_t Local : 1;
    };
} DL_OUI;

typedef union _DL_EI48 {
    uint8_t Byte[3];
} DL_EI48;

typedef union _DL_EUI48 {
    uint8_t Byte[6];
    __extension__ struct {
        DL_OUI Oui;
        DL_EI48 Ei48;
    };
} DL_EUI48, *PDL_EUI48;

typedef enum _NL_DAD_STATE {
    NldsInvalid = 0,
    NldsTentative = 1,
    NldsDuplicate = 2,
    NldsDeprecated = 3,
    NldsPreferred = 4,
    IpDadStateInvalid = 0,
    IpDadStateTentative = 1,
    IpDadStateDuplicate = 2,
    IpDadStateDeprecated = 3,
    IpDadStatePreferred = 4
} NL_DAD_STATE;

#endif /* !WNV_NO_WIN32_COMPAT */

#endif /* WNV_WIN32COMPAT_H */
