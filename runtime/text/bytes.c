/* GPT-2's byte-level alphabet and lossy UTF-8 decoding. */
#include "text.h"

/* Printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves;
 * the other 68 map to U+0100 + n in byte order (GPT-2's bytes_to_unicode). */
static bool printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t tx_byte_to_char(uint8_t b) {
    if (printable(b)) return b;
    if (b <= 0x20) return 0x100u + b;           /* n = 0..32 */
    if (b <= 0xA0) return 0x100u + 33 + (b - 0x7Fu); /* n = 33..66 */
    return 0x100u + 67;                          /* 0xAD */
}

int tx_char_to_byte(uint32_t cp) {
    if (cp < 0x100) return printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 0x100;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}

bool tx_add_lossy(struct tx_str *out, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad;
    while (i < len) {
        size_t start = i;
        while (i < len) {
            size_t n = uc_utf8_next(u + i, len - i, &bad);
            if (!n) break;
            i += n;
        }
        if (!tx_str_add(out, s + start, i - start)) return false;
        if (i < len) {
            if (!tx_str_add_cp(out, 0xFFFD)) return false;
            i += bad;
        }
    }
    return true;
}
