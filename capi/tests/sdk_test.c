/*
 * A consumer of the WNV notification API written from Microsoft's
 * documentation alone (WnvOpen, WnvRequestNotification, the WNV_* structures)
 * and ordinary Win32 calls, built unchanged as C and as C++. Driven by
 * capi/capi_test.go: "need X" asks the driver to raise events and waits for
 * "go"; each event received is printed on one line for the driver to check;
 * API results are checked here, exiting 1 with a FAIL line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wnvapi.h>

#define CHECK(cond, ...)                                               \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("FAIL line %d (%s): ", __LINE__, #cond);            \
            printf(__VA_ARGS__);                                       \
            printf(" [GetLastError %lu]\n", (unsigned long)GetLastError()); \
            exit(1);                                                   \
        }                                                              \
    } while (0)

#define BUFFER_SIZE (16 * sizeof(WNV_REDIRECT_PARAM))

static UCHAR Buffers[WnvNotificationTypeMax][BUFFER_SIZE];

static void Need(const char *what)
{
    char line[32];
    printf("need %s\n", what);
    fflush(stdout);
    CHECK(fgets(line, sizeof(line), stdin) != NULL && strcmp(line, "go\n") == 0, "no go for %s", what);
}

static void InitParam(WNV_NOTIFICATION_PARAM *Param, WNV_NOTIFICATION_TYPE Type)
{
    ZeroMemory(Param, sizeof(*Param));
    Param->Header.MajorVersion = WNV_API_MAJOR_VERSION_1;
    Param->Header.MinorVersion = WNV_API_MINOR_VERSION_0;
    Param->Header.Size = BUFFER_SIZE;
    Param->NotificationType = Type;
    Param->Buffer = Buffers[Type];
}

static const char *FamilyName(ADDRESS_FAMILY Family)
{
    if (Family == AF_INET)
        return "AF_INET";
    if (Family == AF_INET6)
        return "AF_INET6";
    if (Family == AF_UNSPEC)
        return "AF_UNSPEC";
    return "?";
}

/* Dotted quad from the bytes of IN_ADDR, eight hex groups from IN6_ADDR. */
static const char *FormatAddress(ADDRESS_FAMILY Family, const WNV_IP_ADDRESS *Address, char *Out)
{
    if (Family == AF_INET) {
        const IN_ADDR *a = &Address->IP.v4;
        sprintf(Out, "%u.%u.%u.%u", a->S_un.S_un_b.s_b1, a->S_un.S_un_b.s_b2, a->S_un.S_un_b.s_b3,
                a->S_un.S_un_b.s_b4);
    } else if (Family == AF_INET6) {
        const IN6_ADDR *a = &Address->IP.v6;
        char *p = Out;
        for (int i = 0; i < 8; i++)
            p += sprintf(p, i ? ":%x" : "%x", (unsigned)(a->u.Byte[2 * i] << 8 | a->u.Byte[2 * i + 1]));
    } else {
        strcpy(Out, "-");
    }
    return Out;
}

static const char *DadStateName(NL_DAD_STATE State)
{
    switch (State) {
    case IpDadStateInvalid: return "IpDadStateInvalid";
    case IpDadStateTentative: return "IpDadStateTentative";
    case IpDadStateDuplicate: return "IpDadStateDuplicate";
    case IpDadStateDeprecated: return "IpDadStateDeprecated";
    case IpDadStatePreferred: return "IpDadStatePreferred";
    }
    return "?";
}

static const char *ReasonName(WNV_CA_NOTIFICATION_TYPE Reason)
{
    switch (Reason) {
    case WnvCustomerAddressAdded: return "WnvCustomerAddressAdded";
    case WnvCustomerAddressDeleted: return "WnvCustomerAddressDeleted";
    case WnvCustomerAddressMoved: return "WnvCustomerAddressMoved";
    default: return "?";
    }
}

/* Prints the events of a completed request; returns how many there were. */
static ULONG PrintEvents(const WNV_NOTIFICATION_PARAM *Param, ULONG Bytes)
{
    char ca[64], pa[64], npa[64];
    ULONG count = 0;
    if (Param->NotificationType == WnvPolicyMismatchType) {
        const WNV_POLICY_MISMATCH_PARAM *e = (const WNV_POLICY_MISMATCH_PARAM *)Param->Buffer;
        for (count = 0; count < Bytes / sizeof(*e); count++, e++)
            printf("mismatch vsid=%lu ca=%s pa=%s fam=%s/%s\n", (unsigned long)e->VirtualSubnetId,
                   FormatAddress(e->CAFamily, &e->CA, ca), FormatAddress(e->PAFamily, &e->PA, pa),
                   FamilyName(e->CAFamily), FamilyName(e->PAFamily));
    } else if (Param->NotificationType == WnvRedirectType) {
        const WNV_REDIRECT_PARAM *e = (const WNV_REDIRECT_PARAM *)Param->Buffer;
        for (count = 0; count < Bytes / sizeof(*e); count++, e++)
            printf("redirect vsid=%lu ca=%s pa=%s newpa=%s fam=%s/%s/%s\n", (unsigned long)e->VirtualSubnetId,
                   FormatAddress(e->CAFamily, &e->CA, ca), FormatAddress(e->PAFamily, &e->PA, pa),
                   FormatAddress(e->NewPAFamily, &e->NewPA, npa), FamilyName(e->CAFamily),
                   FamilyName(e->PAFamily), FamilyName(e->NewPAFamily));
    } else {
        const WNV_OBJECT_CHANGE_PARAM *e = (const WNV_OBJECT_CHANGE_PARAM *)Param->Buffer;
        for (count = 0; count < Bytes / sizeof(*e); count++, e++) {
            if (e->ObjectType == WnvProviderAddressType) {
                const WNV_PROVIDER_ADDRESS_CHANGE_PARAM *p = &e->ObjectParam.ProviderAddressChange;
                printf("pa-change pa=%s state=%s fam=%s\n", FormatAddress(p->PAFamily, &p->PA, pa),
                       DadStateName(p->AddressState), FamilyName(p->PAFamily));
            } else {
                const WNV_CUSTOMER_ADDRESS_CHANGE_PARAM *c = &e->ObjectParam.CustomerAddressChange;
                const DL_EUI48 *m = &c->MACAddress;
                printf("ca-change reason=%s mac=%02x:%02x:%02x:%02x:%02x:%02x oui=%02x%02x%02x ei48=%02x%02x%02x "
                       "ca=%s vsid=%lu pa=%s fam=%s/%s\n",
                       ReasonName(c->NotificationReason), m->Byte[0], m->Byte[1], m->Byte[2], m->Byte[3],
                       m->Byte[4], m->Byte[5], m->Oui.Byte[0], m->Oui.Byte[1], m->Oui.Byte[2], m->Ei48.Byte[0],
                       m->Ei48.Byte[1], m->Ei48.Byte[2], FormatAddress(c->CAFamily, &c->CA, ca),
                       (unsigned long)c->VirtualSubnetId, FormatAddress(c->PAFamily, &c->PA, pa),
                       FamilyName(c->CAFamily), FamilyName(c->PAFamily));
            }
        }
    }
    return count;
}

/* Blocking requests until Want events of the type were printed. */
static void ReceiveBlocking(HANDLE Wnv, WNV_NOTIFICATION_TYPE Type, ULONG Want)
{
    WNV_NOTIFICATION_PARAM param;
    for (ULONG got = 0; got < Want;) {
        ULONG bytes = 0;
        InitParam(&param, Type);
        DWORD status = WnvRequestNotification(Wnv, &param, NULL, &bytes);
        CHECK(status == ERROR_SUCCESS, "blocking request of type %d: %lu", (int)Type, (unsigned long)status);
        got += PrintEvents(&param, bytes);
    }
}

int main(void)
{
    WNV_NOTIFICATION_PARAM param[WnvNotificationTypeMax];
    OVERLAPPED ov[WnvNotificationTypeMax];
    HANDLE events[WnvNotificationTypeMax];
    ULONG bytes;
    DWORD status;

    HANDLE wnv = WnvOpen();
    CHECK(wnv != NULL && wnv != INVALID_HANDLE_VALUE, "WnvOpen");

    /* Blocking calls (no OVERLAPPED), IPv4 events of every type. */
    Need("v4");
    ReceiveBlocking(wnv, WnvPolicyMismatchType, 1);
    ReceiveBlocking(wnv, WnvRedirectType, 1);
    ReceiveBlocking(wnv, WnvObjectChangeType, 2);
    printf("blocking done\n");

    /* A zeroed OVERLAPPED: no event, completion signals the WNV handle. */
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        OVERLAPPED zeroed = {0};
        InitParam(&param[t], (WNV_NOTIFICATION_TYPE)t);
        ov[t] = zeroed;
        status = WnvRequestNotification(wnv, &param[t], &ov[t], NULL);
        CHECK(status == ERROR_IO_PENDING, "overlapped request of type %d: %lu", t, (unsigned long)status);
        CHECK(!HasOverlappedIoCompleted(&ov[t]), "type %d completed early", t);
    }
    CHECK(!GetOverlappedResult(wnv, &ov[0], &bytes, FALSE) && GetLastError() == ERROR_IO_INCOMPLETE,
          "GetOverlappedResult of a pending request");
    CHECK(WaitForSingleObject(wnv, 0) == WAIT_TIMEOUT, "WNV handle signalled with all requests pending");
    Need("v6");
    CHECK(WaitForSingleObject(wnv, 5000) == WAIT_OBJECT_0, "WNV handle not signalled by a completion");
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        CHECK(GetOverlappedResult(wnv, &ov[t], &bytes, TRUE), "GetOverlappedResult of type %d", t);
        CHECK(HasOverlappedIoCompleted(&ov[t]), "type %d not completed", t);
        if (PrintEvents(&param[t], bytes) == 1 && t == WnvObjectChangeType)
            ReceiveBlocking(wnv, WnvObjectChangeType, 1);
    }
    printf("zeroed overlapped done\n");

    /* Overlapped with events: manual-reset (CreateEvent), auto-reset
     * (CreateEventW), and one created signalled, which the request resets. */
    events[0] = CreateEvent(NULL, TRUE, FALSE, NULL);
    events[1] = CreateEventW(NULL, FALSE, FALSE, NULL);
    events[2] = CreateEvent(NULL, TRUE, TRUE, NULL);
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        CHECK(events[t] != NULL, "CreateEvent %d", t);
        InitParam(&param[t], (WNV_NOTIFICATION_TYPE)t);
        ZeroMemory(&ov[t], sizeof(ov[t]));
        ov[t].hEvent = events[t];
        status = WnvRequestNotification(wnv, &param[t], &ov[t], NULL);
        CHECK(status == ERROR_IO_PENDING, "request with event, type %d: %lu", t, (unsigned long)status);
        CHECK(WaitForSingleObject(events[t], 0) == WAIT_TIMEOUT, "event %d signalled before completion", t);
    }
    Need("mixed");
    CHECK(WaitForMultipleObjects(WnvNotificationTypeMax, events, TRUE, 5000) == WAIT_OBJECT_0,
          "events not all signalled");
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        CHECK(GetOverlappedResult(wnv, &ov[t], &bytes, FALSE), "GetOverlappedResult of type %d", t);
        PrintEvents(&param[t], bytes);
    }
    CHECK(WaitForSingleObject(events[0], 0) == WAIT_OBJECT_0, "manual-reset event reset by a wait");
    CHECK(WaitForSingleObject(events[1], 0) == WAIT_TIMEOUT, "auto-reset event still signalled after a wait");
    CHECK(ResetEvent(events[0]) && WaitForSingleObject(events[0], 0) == WAIT_TIMEOUT, "ResetEvent");
    CHECK(SetEvent(events[1]) && WaitForSingleObject(events[1], 0) == WAIT_OBJECT_0 &&
              WaitForSingleObject(events[1], 0) == WAIT_TIMEOUT,
          "SetEvent on an auto-reset event");

    /* An event, and GetOverlappedResult waiting for the completion. */
    InitParam(&param[1], WnvRedirectType);
    ZeroMemory(&ov[1], sizeof(ov[1]));
    ov[1].hEvent = events[1];
    status = WnvRequestNotification(wnv, &param[1], &ov[1], NULL);
    CHECK(status == ERROR_IO_PENDING, "redirect request: %lu", (unsigned long)status);
    Need("redirect");
    CHECK(GetOverlappedResult(wnv, &ov[1], &bytes, TRUE), "waiting GetOverlappedResult with an event");
    PrintEvents(&param[1], bytes);
    CHECK(WaitForSingleObject(events[1], 0) == WAIT_OBJECT_0, "event not signalled by the completion");
    printf("events done\n");

    /* CancelIoEx: one request by its OVERLAPPED, then all of the handle's. */
    InitParam(&param[0], WnvPolicyMismatchType);
    ZeroMemory(&ov[0], sizeof(ov[0]));
    ov[0].hEvent = events[0];
    CHECK(WnvRequestNotification(wnv, &param[0], &ov[0], NULL) == ERROR_IO_PENDING, "request to cancel");
    CHECK(CancelIoEx(wnv, &ov[0]), "CancelIoEx");
    CHECK(!GetOverlappedResult(wnv, &ov[0], &bytes, TRUE) && GetLastError() == ERROR_OPERATION_ABORTED,
          "cancelled request");
    CHECK(WaitForSingleObject(events[0], 0) == WAIT_OBJECT_0, "event of a cancelled request not signalled");
    CHECK(!CancelIoEx(wnv, &ov[0]) && GetLastError() == ERROR_NOT_FOUND, "CancelIoEx of a completed request");
    InitParam(&param[1], WnvRedirectType);
    ZeroMemory(&ov[1], sizeof(ov[1]));
    CHECK(WnvRequestNotification(wnv, &param[1], &ov[1], NULL) == ERROR_IO_PENDING, "request to cancel");
    CHECK(CancelIoEx(wnv, NULL), "CancelIoEx(NULL)");
    CHECK(!GetOverlappedResult(wnv, &ov[1], &bytes, TRUE) && GetLastError() == ERROR_OPERATION_ABORTED,
          "request cancelled with CancelIoEx(NULL)");
    printf("cancel done\n");

    /* CloseHandle of each kind. An event closed while its request is in
     * flight stays usable by the request; closing the WNV handle completes
     * what is in flight. */
    for (int t = 0; t < WnvNotificationTypeMax; t++) {
        InitParam(&param[t], (WNV_NOTIFICATION_TYPE)t);
        ZeroMemory(&ov[t], sizeof(ov[t]));
        ov[t].hEvent = t == 1 ? NULL : events[t];
        CHECK(WnvRequestNotification(wnv, &param[t], &ov[t], NULL) == ERROR_IO_PENDING, "request %d", t);
    }
    CHECK(CloseHandle(events[2]), "CloseHandle of an event in use");
    CHECK(CloseHandle(wnv), "CloseHandle of the WNV handle");
    for (int t = 0; t < WnvNotificationTypeMax; t++)
        CHECK(HasOverlappedIoCompleted(&ov[t]), "request %d still pending after CloseHandle", t);
    CHECK(WaitForSingleObject(events[0], 0) == WAIT_OBJECT_0, "event not signalled by CloseHandle");
    CHECK(!CloseHandle(wnv) && GetLastError() == ERROR_INVALID_HANDLE, "second CloseHandle of the WNV handle");
    bytes = 0;
    CHECK(WnvRequestNotification(wnv, &param[0], NULL, &bytes) == ERROR_INVALID_HANDLE, "request on a closed handle");
    CHECK(CloseHandle(events[0]) && CloseHandle(events[1]), "CloseHandle of events");
    CHECK(!CloseHandle(events[0]) && GetLastError() == ERROR_INVALID_HANDLE, "second CloseHandle of an event");
    CHECK(WaitForSingleObject(events[1], 0) == WAIT_FAILED && GetLastError() == ERROR_INVALID_HANDLE,
          "wait on a closed event");
    printf("close done\n");
    printf("PASS\n");
    return 0;
}
