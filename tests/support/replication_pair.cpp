#include "signet_test/replication_pair.hpp"

#include "signet_test/keys.hpp"
#include "signet_test/test_hsm.hpp"

namespace signet::test {

ReplicationPair make_replication_pair() {
    ReplicationPair p;
    auto stores = fresh_key_stores(2);
    p.a = stores[0];
    p.b = stores[1];
    p.transport_id = pkcs11::generate_transport_key(*p.b, "signet.transport.a").value().id;
    p.kek_id = add_kek(p, "signet.kek.a-to-b");
    return p;
}

std::string add_kek(const ReplicationPair& pair, const std::string& label) {
    const pkcs11::KeyInfo transport = pair.b->get(pair.transport_id).value();
    const pkcs11::KekExport kek =
        pkcs11::export_kek(*pair.a, test_hsm().so_pin(), transport.spki_der, label).value();
    pkcs11::import_kek(*pair.b, pair.transport_id, kek, label).value();
    return kek.kek_id;
}

}  // namespace signet::test
