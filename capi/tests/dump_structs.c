/* Fills one structure of each kind with fixed values and prints its bytes in
 * hex, one "NAME hex" line each, for the Go test that compares them with the
 * Go encoder (capi/capi_test.go holds the same values). Families are set to
 * the wire's Windows values, which the library translates for its callers. */
#include "wnvapi.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static void dump(const char *name, const void *p, size_t n)
{
    const UCHAR *b = p;
    printf("%s ", name);
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
}

enum { WIRE_AF_INET = 2, WIRE_AF_INET6 = 23 };

static void addr(ADDRESS_FAMILY *fam, WNV_IP_ADDRESS *a, const char *s)
{
    if (inet_pton(AF_INET, s, &a->IP.v4) == 1)
        *fam = WIRE_AF_INET;
    else if (inet_pton(AF_INET6, s, &a->IP.v6) == 1)
        *fam = WIRE_AF_INET6;
}

int main(void)
{
    WNV_POLICY_MISMATCH_PARAM pm;
    memset(&pm, 0, sizeof pm);
    pm.VirtualSubnetId = 5001;
    addr(&pm.CAFamily, &pm.CA, "10.0.0.11");
    addr(&pm.PAFamily, &pm.PA, "198.18.0.2");
    dump("policy-mismatch-v4", &pm, sizeof pm);

    memset(&pm, 0, sizeof pm);
    pm.VirtualSubnetId = 0xFFFFFE;
    addr(&pm.CAFamily, &pm.CA, "fd00::11");
    dump("policy-mismatch-v6-no-pa", &pm, sizeof pm);

    WNV_REDIRECT_PARAM rd;
    memset(&rd, 0, sizeof rd);
    rd.VirtualSubnetId = 5001;
    addr(&rd.CAFamily, &rd.CA, "fd00::11");
    addr(&rd.PAFamily, &rd.PA, "198.18.0.2");
    addr(&rd.NewPAFamily, &rd.NewPA, "fd00:198:18::3");
    dump("redirect", &rd, sizeof rd);

    WNV_OBJECT_CHANGE_PARAM oc;
    memset(&oc, 0, sizeof oc);
    oc.ObjectType = WnvProviderAddressType;
    addr(&oc.ObjectParam.ProviderAddressChange.PAFamily, &oc.ObjectParam.ProviderAddressChange.PA, "fd00:198:18::2");
    oc.ObjectParam.ProviderAddressChange.AddressState = NldsPreferred;
    dump("object-change-pa", &oc, sizeof oc);

    memset(&oc, 0, sizeof oc);
    oc.ObjectType = WnvCustomerAddressType;
    WNV_CUSTOMER_ADDRESS_CHANGE_PARAM *ca = &oc.ObjectParam.CustomerAddressChange;
    const UCHAR mac[6] = {0x00, 0x15, 0x5d, 0x01, 0x02, 0x03};
    memcpy(ca->MACAddress.Byte, mac, sizeof mac);
    addr(&ca->CAFamily, &ca->CA, "10.0.0.12");
    ca->VirtualSubnetId = 5002;
    addr(&ca->PAFamily, &ca->PA, "198.18.0.3");
    ca->NotificationReason = WnvCustomerAddressMoved;
    dump("object-change-ca", &oc, sizeof oc);
    return 0;
}
