// libxcrypt (Debian's libcrypt-dev): crypt_rn for basic_auth's htpasswd hashes (bcrypt
// $2y$/$2b$, SHA-crypt $5$/$6$). Re-entrant: each call brings its own crypt_data.
#include <crypt.h>
