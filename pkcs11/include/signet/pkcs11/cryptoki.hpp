// The one place that includes the Cryptoki header (p11-kit's, PKCS#11 v2.40 compatible names).
#pragma once

#include <p11-kit/pkcs11.h>
