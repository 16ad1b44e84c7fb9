/* Checks every structure of wnvapi.h against the spec's size/offset table
 * (docs/notify.md, spec §5), and the Windows types they and OVERLAPPED are
 * made of. Fails to compile, or exits 1, on any mismatch. */
#include "wnvapi.h"

#include <stddef.h>
#include <stdio.h>

static int failures;

static void check(const char *what, size_t got, size_t want)
{
    if (got != want) {
        fprintf(stderr, "%s = %zu, want %zu\n", what, got, want);
        failures++;
    }
}

#define SIZE(T, n)                                                   \
    _Static_assert(sizeof(T) == (n), "sizeof " #T);                  \
    check("sizeof(" #T ")", sizeof(T), (n))
#define OFF(T, f, n)                                                 \
    _Static_assert(offsetof(T, f) == (n), "offsetof " #T "." #f);    \
    check("offsetof(" #T ", " #f ")", offsetof(T, f), (n))

int main(void)
{
    SIZE(ADDRESS_FAMILY, 2);
    SIZE(IN_ADDR, 4);
    SIZE(IN6_ADDR, 16);
    SIZE(WNV_IP_ADDRESS, 16);
    OFF(WNV_IP_ADDRESS, IP.v4, 0);
    OFF(WNV_IP_ADDRESS, IP.v6, 0);
    SIZE(DL_EUI48, 6);
    OFF(DL_EUI48, Oui, 0);
    OFF(DL_EUI48, Ei48, 3);
    SIZE(WNV_NOTIFICATION_TYPE, 4);
    SIZE(WNV_OBJECT_TYPE, 4);
    SIZE(WNV_CA_NOTIFICATION_TYPE, 4);
    SIZE(NL_DAD_STATE, 4);

    SIZE(OVERLAPPED, 32);
    OFF(OVERLAPPED, Internal, 0);
    OFF(OVERLAPPED, InternalHigh, 8);
    OFF(OVERLAPPED, Pointer, 16);
    OFF(OVERLAPPED, Offset, 16);
    OFF(OVERLAPPED, OffsetHigh, 20);
    OFF(OVERLAPPED, hEvent, 24);

    SIZE(WNV_OBJECT_HEADER, 8);
    OFF(WNV_OBJECT_HEADER, MajorVersion, 0);
    OFF(WNV_OBJECT_HEADER, MinorVersion, 1);
    OFF(WNV_OBJECT_HEADER, Size, 4);

    SIZE(WNV_NOTIFICATION_PARAM, 24);
    OFF(WNV_NOTIFICATION_PARAM, Header, 0);
    OFF(WNV_NOTIFICATION_PARAM, NotificationType, 8);
    OFF(WNV_NOTIFICATION_PARAM, PendingNotifications, 12);
    OFF(WNV_NOTIFICATION_PARAM, Buffer, 16);

    SIZE(WNV_POLICY_MISMATCH_PARAM, 40);
    OFF(WNV_POLICY_MISMATCH_PARAM, CAFamily, 0);
    OFF(WNV_POLICY_MISMATCH_PARAM, PAFamily, 2);
    OFF(WNV_POLICY_MISMATCH_PARAM, VirtualSubnetId, 4);
    OFF(WNV_POLICY_MISMATCH_PARAM, CA, 8);
    OFF(WNV_POLICY_MISMATCH_PARAM, PA, 24);

    SIZE(WNV_REDIRECT_PARAM, 60);
    OFF(WNV_REDIRECT_PARAM, CAFamily, 0);
    OFF(WNV_REDIRECT_PARAM, PAFamily, 2);
    OFF(WNV_REDIRECT_PARAM, NewPAFamily, 4);
    OFF(WNV_REDIRECT_PARAM, VirtualSubnetId, 8);
    OFF(WNV_REDIRECT_PARAM, CA, 12);
    OFF(WNV_REDIRECT_PARAM, PA, 28);
    OFF(WNV_REDIRECT_PARAM, NewPA, 44);

    SIZE(WNV_PROVIDER_ADDRESS_CHANGE_PARAM, 24);
    OFF(WNV_PROVIDER_ADDRESS_CHANGE_PARAM, PAFamily, 0);
    OFF(WNV_PROVIDER_ADDRESS_CHANGE_PARAM, PA, 4);
    OFF(WNV_PROVIDER_ADDRESS_CHANGE_PARAM, AddressState, 20);

    SIZE(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, 52);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, MACAddress, 0);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, CAFamily, 6);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, CA, 8);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, VirtualSubnetId, 24);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, PAFamily, 28);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, PA, 32);
    OFF(WNV_CUSTOMER_ADDRESS_CHANGE_PARAM, NotificationReason, 48);

    SIZE(WNV_OBJECT_CHANGE_PARAM, 56);
    OFF(WNV_OBJECT_CHANGE_PARAM, ObjectType, 0);
    OFF(WNV_OBJECT_CHANGE_PARAM, ObjectParam, 4);
    OFF(WNV_OBJECT_CHANGE_PARAM, ObjectParam.ProviderAddressChange, 4);
    OFF(WNV_OBJECT_CHANGE_PARAM, ObjectParam.CustomerAddressChange, 4);

    if (failures) {
        fprintf(stderr, "%d layout mismatches\n", failures);
        return 1;
    }
    printf("layout ok\n");
    return 0;
}
