/*
 * wnvapi.h after another Win32 compatibility layer, built as C and as C++.
 * The lines before the #include stand for that layer's windef.h and
 * winbase.h: its own base types (ULONG_PTR differs from ours), an OVERLAPPED
 * of another shape but Windows' layout, error codes written as winerror.h
 * writes them, and the _WINDEF_ guard. The header must take them as they
 * are, and the program still links and runs against libwnvapi: WnvOpen with
 * no server (capi_test.go points WNV_NOTIFY_SOCKET nowhere) fails with
 * ERROR_OPEN_FAILED.
 */
#define _WINDEF_
typedef unsigned char UCHAR, *PUCHAR;
typedef unsigned short USHORT;
typedef unsigned int ULONG, *PULONG, DWORD;
typedef unsigned long long ULONGLONG;
typedef unsigned long long ULONG_PTR;
typedef int BOOL;
typedef void *HANDLE;
#define WINAPI
typedef struct _OVERLAPPED {
    ULONG_PTR Internal;
    ULONG_PTR InternalHigh;
    void *Pointer;
    HANDLE hEvent;
} OVERLAPPED, *LPOVERLAPPED;
#define ERROR_OPEN_FAILED 110L
#define ERROR_IO_PENDING 997L
#ifdef __cplusplus
extern "C" {
#endif
DWORD WINAPI GetLastError(void);
#ifdef __cplusplus
}
#endif

#include <stdio.h>
#include <wnvapi.h>

int main(void)
{
    HANDLE h = WnvOpen();
    if (h != NULL || GetLastError() != ERROR_OPEN_FAILED) {
        printf("FAIL: WnvOpen = %p, last error %u\n", h, GetLastError());
        return 1;
    }
    /* The API's own names are all there. */
    WNV_OBJECT_CHANGE_PARAM change;
    change.ObjectType = WnvCustomerAddressType;
    change.ObjectParam.CustomerAddressChange.MACAddress.Oui.Byte[0] = 0x00;
    change.ObjectParam.CustomerAddressChange.CA.IP.v4.S_un.S_addr = 0;
    change.ObjectParam.CustomerAddressChange.NotificationReason = WnvCustomerAddressMoved;
    printf("compat ok %d %d\n", (int)ERROR_IO_PENDING, (int)change.ObjectParam.CustomerAddressChange.NotificationReason);
    return 0;
}
