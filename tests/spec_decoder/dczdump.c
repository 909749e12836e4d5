/*
 * dczdump: an independent .dcz decoder written from docs/format.md alone (no code shared with the
 * Python reader), used by tests/test_spec_decoder.py to check that the specification is complete.
 *
 * Usage: dczdump FILE.dcz [MAX_ELEMENTS]   (the cap on decoded elements per file, default 2**28)
 * On success prints "header <header bytes as hex>", then for every tensor in file order:
 *     tensor <name as hex> <kind> <ndim> <dim>...
 *     <values, space separated>
 * where kind is f32 or f16 (values as the hex of their bit patterns) or i64, i32, u8 (decimal).
 * Shared tensors decode to f32. Then, for a file with a section block (minor version >= 1), one line
 * per section in file order:
 *     section <name as hex> <payload size> <CRC-32 of the payload, 8 hex digits>
 * On any malformed input prints "error: ..." to stderr and exits 1.
 * Whether the header is a JSON object and the names are UTF-8 is left to the caller (the test).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMEL 2147483647ULL

static const uint8_t *buf;
static uint64_t pos, end; /* end = offset of the CRC */

static void fail(const char *what) {
    fprintf(stderr, "error: %s (offset %llu)\n", what, (unsigned long long)pos);
    exit(1);
}

static const uint8_t *take(uint64_t n, const char *what) {
    if (n > end - pos) fail(what);
    const uint8_t *p = buf + pos;
    pos += n;
    return p;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t rd(int n, const char *what) { return le(take(n, what), n); }

static uint32_t crc32(const uint8_t *p, uint64_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (uint64_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1F, m = h & 0x3FF, bits;
    if (e == 0x1F) {
        bits = sign | 0x7F800000u | (m << 13);
    } else if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) { m <<= 1; e--; }
            bits = sign | (e << 23) | ((m & 0x3FF) << 13);
        }
    } else {
        bits = sign | ((e + 127 - 15) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* A Huffman stream (section 4), decoded into out[0..count-1]. */
static void stream(uint32_t alphabet, uint64_t count, uint32_t *out) {
    uint64_t m = rd(4, "table size");
    if (m > alphabet) fail("table lists more symbols than the alphabet");
    const uint8_t *packed = take((m + 1) / 2, "code lengths");
    uint8_t *len = calloc(alphabet, 1);
    if (!len) fail("out of memory");
    for (uint64_t j = 0; j < m; j++) len[j] = (j & 1) ? (packed[j / 2] & 0x0F) : (packed[j / 2] >> 4);
    uint64_t nbits = rd(8, "bit count");
    if (nbits > 8 * (end - pos)) fail("bit count beyond the file");
    const uint8_t *bits = take((nbits + 7) / 8, "bitstream");

    uint32_t used = 0, single = 0, cnt[16] = {0};
    for (uint32_t j = 0; j < alphabet; j++)
        if (len[j]) { used++; single = j; cnt[len[j]]++; }
    if (used == 0) {
        if (count) fail("empty code for a non-empty stream");
        if (nbits) fail("bits left over");
    } else if (used == 1) {
        if (len[single] != 1) fail("single-symbol code must have length 1");
        if (nbits) fail("single-symbol code must have 0 bits");
        for (uint64_t i = 0; i < count; i++) out[i] = single;
    } else {
        uint64_t kraft = 0;
        for (int l = 1; l <= 15; l++) kraft += (uint64_t)cnt[l] << (15 - l);
        if (kraft != 1u << 15) fail("code lengths are not a complete prefix code");
        /* symbols sorted by (length, symbol): canonical order */
        uint32_t *sorted = malloc(sizeof(uint32_t) * used), offs[16] = {0};
        if (!sorted) fail("out of memory");
        for (int l = 2; l <= 15; l++) offs[l] = offs[l - 1] + cnt[l - 1];
        for (uint32_t j = 0; j < alphabet; j++)
            if (len[j]) sorted[offs[len[j]]++] = j;
        uint64_t bit = 0;
        for (uint64_t i = 0; i < count; i++) {
            uint32_t code = 0, first = 0, index = 0;
            int l;
            for (l = 1; l <= 15; l++) {
                if (bit >= nbits) fail("stream ends before its symbols");
                code |= (bits[bit >> 3] >> (7 - (bit & 7))) & 1u;
                bit++;
                if (code - first < cnt[l]) { out[i] = sorted[index + code - first]; break; }
                index += cnt[l];
                first = (first + cnt[l]) << 1;
                code <<= 1;
            }
            if (l > 15) fail("no code matches");
        }
        if (bit != nbits) fail("bits left over after the last symbol");
        free(sorted);
    }
    free(len);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: dczdump FILE.dcz [MAX_ELEMENTS]\n"); return 2; }
    uint64_t max_elements = argc == 3 ? strtoull(argv[2], NULL, 10) : 1ULL << 28;
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "error: read\n"); return 1; }
    fclose(f);
    buf = data;
    pos = 0;
    if (size < 24) fail("file too short");
    if (memcmp(data, "\x89" "DCZ\r\n\x1a\n", 8)) fail("bad magic");
    end = (uint64_t)size - 4;
    if (crc32(data, end) != (uint32_t)le(data + end, 4)) fail("CRC mismatch");
    pos = 8;
    if (rd(2, "major") != 1) fail("unsupported major version");
    uint64_t minor = rd(2, "minor");
    uint64_t hlen = rd(4, "header length");
    const uint8_t *header = take(hlen, "header"); /* JSON: parsed by the caller, not needed here */
    printf("header ");
    for (uint64_t i = 0; i < hlen; i++) printf("%02x", header[i]);
    printf("\n");
    uint64_t n = rd(4, "tensor count"), total = 0;
    if (n > (end - pos) / 7) fail("tensor count larger than the file can hold");
    const uint8_t **names = malloc(sizeof(uint8_t *) * (n ? n : 1));
    uint64_t *name_lens = malloc(sizeof(uint64_t) * (n ? n : 1));
    if (!names || !name_lens) fail("out of memory");
    for (uint64_t t = 0; t < n; t++) {
        uint64_t nlen = rd(2, "name length");
        if (nlen == 0) fail("empty name");
        const uint8_t *name = take(nlen, "name");
        for (uint64_t u = 0; u < t; u++)
            if (name_lens[u] == nlen && !memcmp(names[u], name, nlen)) fail("duplicate name");
        names[t] = name;
        name_lens[t] = nlen;
        uint64_t enc = rd(1, "encoding"), ndim = rd(1, "ndim"), dims[8], numel = 1;
        if (enc > 1) fail("unknown encoding");
        if (ndim > 8) fail("ndim > 8");
        for (uint64_t d = 0; d < ndim; d++) {
            dims[d] = rd(4, "dimension");
            if (numel && dims[d] && numel > MAX_NUMEL / dims[d]) fail("too many elements");
            numel *= dims[d];
        }
        if (numel > MAX_NUMEL) fail("too many elements");
        total += numel;
        if (total > max_elements) fail("file exceeds the element cap");
        const char *kind = "f32";
        const uint8_t *raw = NULL;
        float *values = NULL;
        int itemsize = 4;
        if (enc == 0) {
            static const char *kinds[] = {"f32", "f16", "i64", "i32", "u8"};
            static const int sizes[] = {4, 2, 8, 4, 1};
            uint64_t code = rd(1, "dtype");
            if (code > 4) fail("unknown dtype");
            kind = kinds[code];
            itemsize = sizes[code];
            raw = take(numel * itemsize, "raw data");
        } else {
            uint64_t cbt = rd(1, "codebook dtype"), k = rd(4, "codebook size");
            if (cbt > 1 || k < 1 || k > 65536) fail("bad codebook");
            const uint8_t *cb = take(k * (cbt ? 2 : 4), "codebook");
            float *c = malloc(sizeof(float) * k);
            for (uint64_t i = 0; i < k; i++) {
                if (cbt) { c[i] = half_to_float((uint16_t)le(cb + 2 * i, 2)); }
                else { uint32_t b = (uint32_t)le(cb + 4 * i, 4); memcpy(&c[i], &b, 4); }
            }
            uint64_t b = rd(1, "index bits"), e = rd(4, "entry count");
            if (b < 1 || b > 16) fail("index bits outside 1..16");
            if (e > numel) fail("more entries than elements");
            uint32_t *sym = malloc(sizeof(uint32_t) * (e ? e : 1)), *gap = malloc(sizeof(uint32_t) * (e ? e : 1));
            values = calloc(numel ? numel : 1, sizeof(float));
            if (!sym || !gap || !values) fail("out of memory");
            stream((uint32_t)k + 1, e, sym);
            stream(1u << b, e, gap);
            int64_t p = -1;
            for (uint64_t i = 0; i < e; i++) {
                p += (int64_t)gap[i] + 1;
                if ((uint64_t)p >= numel) fail("entry beyond the tensor");
                if (sym[i] < k) values[p] = c[sym[i]];
            }
            free(sym); free(gap); free(c);
        }
        printf("tensor ");
        for (uint64_t i = 0; i < nlen; i++) printf("%02x", name[i]);
        printf(" %s %llu", kind, (unsigned long long)ndim);
        for (uint64_t d = 0; d < ndim; d++) printf(" %llu", (unsigned long long)dims[d]);
        printf("\n");
        for (uint64_t i = 0; i < numel; i++) {
            if (i) putchar(' ');
            if (values) { uint32_t bits; memcpy(&bits, &values[i], 4); printf("%08x", bits); }
            else if (!strcmp(kind, "f32")) printf("%08x", (uint32_t)le(raw + 4 * i, 4));
            else if (!strcmp(kind, "f16")) printf("%04x", (uint32_t)le(raw + 2 * i, 2));
            else if (!strcmp(kind, "i64")) printf("%lld", (long long)le(raw + 8 * i, 8));
            else if (!strcmp(kind, "i32")) printf("%d", (int32_t)(uint32_t)le(raw + 4 * i, 4));
            else printf("%u", (unsigned)raw[i]);
        }
        printf("\n");
        free(values);
    }
    if (minor >= 1) { /* section block (format 1.1) */
        uint64_t s = rd(4, "section count");
        if (s > (end - pos) / 11) fail("section count larger than the file can hold");
        names = realloc(names, sizeof(uint8_t *) * (s ? s : 1));
        name_lens = realloc(name_lens, sizeof(uint64_t) * (s ? s : 1));
        if (!names || !name_lens) fail("out of memory");
        for (uint64_t t = 0; t < s; t++) {
            uint64_t nlen = rd(2, "section name length");
            if (nlen == 0) fail("empty section name");
            const uint8_t *name = take(nlen, "section name");
            for (uint64_t u = 0; u < t; u++)
                if (name_lens[u] == nlen && !memcmp(names[u], name, nlen)) fail("duplicate section name");
            names[t] = name;
            name_lens[t] = nlen;
            uint64_t size = rd(8, "section size");
            const uint8_t *payload = take(size, "section payload");
            printf("section ");
            for (uint64_t i = 0; i < nlen; i++) printf("%02x", name[i]);
            printf(" %llu %08x\n", (unsigned long long)size, crc32(payload, size));
        }
    }
    if (pos != end) fail("bytes left after the last record or section");
    free(names);
    free(name_lens);
    free(data);
    return 0;
}
