/*
 * freqnets.jpeg._jpegc: a JPEG's quantised DCT coefficients through libjpeg(-turbo)'s
 * jpeg_read_coefficients (no inverse DCT, no colour conversion).
 *
 * Copyright 2026 the freqnets authors. Licensed under the Apache License, Version 2.0.
 * libjpeg-turbo is distributed under the IJG licence and the Modified BSD licence.
 *
 * Python validates the headers first (freqnets/jpeg/_markers.py); this module only decodes, except for the
 * headers its direct path reads (parse_direct: the same checks, the rest declined to Python's parser).
 * libjpeg errors never exit the process: error_exit longjmps back here and becomes a Python
 * exception. libjpeg warnings (corrupt or truncated data) are collected and returned, so the
 * caller decides between strict and lenient reading. The GIL is released while decoding and
 * while writing the output planes.
 *
 * Huffman-coded data is decoded by this module's own decoder plugged into libjpeg (see "The strict
 * Huffman decoder" below): it also reports the damage libjpeg's decoder lets through silently.
 * A byte budget (max_bytes) is checked against the frame header before libjpeg allocates anything.
 *
 * Optionally only a block window of each component is laid out; with a window, single-scan
 * sequential files stop decoding after the window's last iMCU row (see window_source).
 *
 * Optionally the chroma planes are downsampled by 2 per axis in the DCT domain while they are written
 * (4:4:4 -> 4:2:0 and the like, see write_plane_downsampled).
 *
 * Output: per component one float32 plane (64, height_in_blocks, width_in_blocks), the
 * dequantised coefficients (quantised value x step, rounded once to float32, so equal to
 * NumPy's float32 product) in natural or zigzag channel order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h> /* write_block_row's 8-block transposes (every x86-64 CPU has SSE2) */
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h> /* the AVX2 variant, chosen at run time (fq_has_avx2) */
#define FQ_AVX2 1
#endif

#include <jpeglib.h>
#include <jerror.h>
#include <jpegint.h> /* the entropy decoder and marker reader interfaces (see fq_install) */

#define MAX_WARNINGS 8
#define FQ_MAX_COMPONENTS 4
/* the start of the error message of a read refused by max_bytes (freqnets/jpeg/_backends.py matches it) */
#define OVER_BUDGET "over max_bytes:"

/* natural index of the k-th zigzag coefficient (T.81 Figure A.6) */
static const int zigzag_to_natural[DCTSIZE2] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
};

struct reader_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char error[JMSG_LENGTH_MAX];
    int n_warnings;
    char warnings[MAX_WARNINGS][JMSG_LENGTH_MAX];
    long n_scans;
    long max_scans;
    int stopped; /* the window source ended the data on purpose: later warnings are not damage */
    int strict;  /* refuse up front a file too short for its first scan (first_scan_fits) */
};

/* A memory source that can end the data (a fake EOI, as libjpeg's memory source does at the real end)
 * once the iMCU rows a block window needs are decoded: used for single-scan sequential files with a
 * window, where nothing after those rows is returned. The whole buffer is handed over at once (so
 * libjpeg's Huffman decoder keeps its fast path); libjpeg's progress monitor, called before every
 * iMCU row of jpeg_read_coefficients, empties the buffer after the window's last row, and the next
 * fill returns the fake EOI. */
struct window_source {
    struct jpeg_source_mgr pub;
    struct jpeg_progress_mgr progress;
    const JOCTET *data;
    size_t size, pos;
    long stop_after; /* stop once input_iMCU_row > stop_after; -1: never */
    int ended;       /* the progress monitor ended the data on purpose */
};

/* ---------------------------------------------------------------------------------------------------
 * The strict Huffman decoder.
 *
 * libjpeg's Huffman decoders let some damage through without a warning: a run that carries an AC
 * coefficient past index 63 (sequential) or past the scan's spectral band (progressive first and
 * refinement scans) is written to the last coefficient, and data bytes left over after a scan's last
 * MCU are skipped silently when they were already in the bit buffer. This decoder replaces libjpeg's
 * decode_mcu for Huffman-coded files (for progressive scans libjpeg's start_pass still runs first, so its
 * checks of the scan parameters, the tables and the progression stay in force; for sequential scans the
 * same checks run here, see fq_start_pass) and reports each of
 * those conditions as a warning, with the Python reference decoder's wording and semantics: after a
 * corrupt MCU the rest of its restart interval is left zero. Valid files decode to exactly libjpeg's
 * coefficients (tested against both other backends).
 *
 * Huffman codes are read through a FQ_LOOK-bit lookahead table; longer codes by canonical code ranges
 * (T.81 F.2.2.3). Bits come through a 64-bit buffer filled from libjpeg's source manager a byte at a
 * time (byte stuffing and markers handled as libjpeg does: a marker stops the data, the decoder then
 * reads zero bits and, if it needs them, that is a premature end of the segment).
 * --------------------------------------------------------------------------------------------------- */

#define FQ_LOOK 10

struct fq_huff {
    uint16_t look[1 << FQ_LOOK]; /* (code length << 8) | symbol for codes of at most FQ_LOOK bits; 0: longer */
    /* AC tables: (value << 16) | (run << 8) | (code + value bits) where both fit the lookahead; 0: not so */
    int32_t fast_ac[1 << FQ_LOOK];
    int32_t maxcode[17];         /* largest code of each length, -1 where none */
    int32_t valoffset[17];       /* symbol index of a code of length l: code + valoffset[l] */
    uint8_t symbols[256];
};

enum fq_mode { FQ_SEQUENTIAL, FQ_DC_FIRST, FQ_DC_REFINE, FQ_AC_FIRST, FQ_AC_REFINE };

struct fq_entropy {
    void (*libjpeg_start_pass)(j_decompress_ptr);
    int installed;
    enum fq_mode mode;
    uint64_t acc; /* the bit reader between MCUs (see fq_bitbuf) */
    int nbits, zeros;
    int insufficient; /* damage seen in this restart interval: skip to the next one */
    int damaged;      /* the direct path (no libjpeg session): some damage was seen (see fq_warn) */
    int pred[MAX_COMPS_IN_SCAN];
    unsigned int eobrun, restarts_to_go;
    unsigned long mcus_left;
    const struct fq_huff *dc[D_MAX_BLOCKS_IN_MCU], *ac[D_MAX_BLOCKS_IN_MCU]; /* per block of the MCU */
    int slot[D_MAX_BLOCKS_IN_MCU];                                          /* its component in the scan */
};

static void fq_build(const JHUFF_TBL *table, int is_ac, struct fq_huff *d) {
    /* libjpeg's start_pass (or fq_table_valid) has checked the table (counts within the code space, at most 256
     * symbols). Canonical codes of at most FQ_LOOK bits take consecutive ranges of the lookahead indices from 0 in
     * code order (a code of length l: 2^(FQ_LOOK - l) of them), so each range is filled as a block and what
     * follows the last one (prefixes of longer codes, or of none) is zeroed: a table is built once per new header
     * (photos mostly have their own tables), and entry by entry this was most of the C header parse. */
    int k = 0, filled = 0;
    int32_t code = 0;
    for (int l = 1; l <= 16; l++) {
        const int count = table->bits[l];
        d->valoffset[l] = k - code;
        for (int i = 0; i < count; i++, k++, code++) {
            const int symbol = table->huffval[k];
            d->symbols[k] = (uint8_t)symbol;
            if (l > FQ_LOOK) {
                continue;
            }
            const int shift = FQ_LOOK - l, run = symbol >> 4, size = symbol & 15, first = code << shift;
            const uint16_t entry = (uint16_t)((l << 8) | symbol);
            uint16_t *look = d->look + first;
            for (size_t j = 0; j < (size_t)1 << shift; j++) {
                look[j] = entry;
            }
            if (is_ac && size != 0 && l + size <= FQ_LOOK) {
                /* the coefficient's bits follow the code inside the lookahead: decoded now. Value bits v take the
                 * indices first + v * step ... (the lower bits, past them, are the next code's) */
                const int step = 1 << (shift - size);
                for (int v = 0; v < 1 << size; v++) {
                    const int value = v >= (1 << (size - 1)) ? v : v - (1 << size) + 1;
                    const int32_t fast = (int32_t)((uint32_t)value << 16) | (run << 8) | (l + size);
                    int32_t *dst = d->fast_ac + first + v * step;
                    for (size_t j = 0; j < (size_t)step; j++) {
                        dst[j] = fast;
                    }
                }
            } else {
                memset(d->fast_ac + first, 0, sizeof *d->fast_ac << shift);
            }
            filled = first + (1 << shift);
        }
        d->maxcode[l] = count ? code - 1 : -1;
        code <<= 1;
    }
    memset(d->look + filled, 0, sizeof *d->look * (size_t)((1 << FQ_LOOK) - filled));
    memset(d->fast_ac + filled, 0, sizeof *d->fast_ac * (size_t)((1 << FQ_LOOK) - filled));
}

/* Derived tables of recently seen Huffman tables, per thread: most files of a data set share their tables
 * (the standard ones, or one encoder's), so a read rarely builds one. Keyed by the table's contents. */
#define FQ_CACHE_SIZE 16
struct fq_cached {
    unsigned long stamp; /* 0: empty */
    int is_ac, n_symbols;
    UINT8 bits[17];
    UINT8 huffval[256];
    struct fq_huff table;
};
static __thread struct fq_cached fq_cache[FQ_CACHE_SIZE];
static __thread unsigned long fq_clock;

/* libjpeg's checks of a Huffman table (those of jpeg_make_d_derived_tbl, with its errors), for the
 * sequential scans whose libjpeg start_pass is skipped (fq_start_pass): at most 256 symbols, codes that fit
 * their lengths without the all-ones code, DC symbols (magnitude categories) 0..15. */
static int fq_table_valid(const JHUFF_TBL *table, int is_ac, int n_symbols) {
    long code = 0;
    int count = 0;
    for (int l = 1; l <= 16; l++) {
        count += table->bits[l];
        code += table->bits[l];
        if (count > 256 || code >= (1L << l)) {
            return 0;
        }
        code <<= 1;
    }
    for (int i = 0; !is_ac && i < n_symbols; i++) {
        if (table->huffval[i] > 15) {
            return 0;
        }
    }
    return 1;
}

static void fq_check_table(j_decompress_ptr cinfo, const JHUFF_TBL *table, int is_ac, int n_symbols) {
    if (!fq_table_valid(table, is_ac, n_symbols)) {
        ERREXIT(cinfo, JERR_BAD_HUFF_TABLE);
    }
}

static const struct fq_huff *fq_table(j_decompress_ptr cinfo, const JHUFF_TBL *table, int is_ac) {
    int n_symbols = 0;
    for (int l = 1; l <= 16; l++) {
        n_symbols += table->bits[l];
    }
    n_symbols = n_symbols > 256 ? 256 : n_symbols;
    struct fq_cached *oldest = &fq_cache[0];
    for (int i = 0; i < FQ_CACHE_SIZE; i++) {
        struct fq_cached *c = &fq_cache[i];
        if (c->stamp != 0 && c->is_ac == is_ac && c->n_symbols == n_symbols &&
            memcmp(c->bits + 1, table->bits + 1, 16) == 0 && memcmp(c->huffval, table->huffval, (size_t)n_symbols) == 0) {
            c->stamp = ++fq_clock;
            return &c->table;
        }
        if (c->stamp < oldest->stamp) {
            oldest = c;
        }
    }
    /* only checked tables enter the cache (an error longjmps out before anything is stored) */
    fq_check_table(cinfo, table, is_ac, n_symbols);
    /* a scan uses at most 8 tables, all looked up at its start: evicting the oldest never hits one in use */
    oldest->stamp = ++fq_clock;
    oldest->is_ac = is_ac;
    oldest->n_symbols = n_symbols;
    memcpy(oldest->bits, table->bits, sizeof oldest->bits);
    memcpy(oldest->huffval, table->huffval, (size_t)n_symbols);
    fq_build(table, is_ac, &oldest->table);
    return &oldest->table;
}

struct session {
    struct jpeg_decompress_struct cinfo; /* first: the libjpeg callbacks find the session from it */
    struct reader_error err;
    struct window_source source;
    struct fq_entropy entropy;
    int libjpeg_huffman; /* decode with libjpeg's own Huffman decoder (for comparisons) */
    unsigned long long max_bytes; /* 0: no limit (see check_budget) */
    int has_outs, dh, dv;
    jvirt_barray_ptr *arrays;
    void (*libjpeg_start_input_pass)(j_decompress_ptr); /* see session_start_input_pass */
    int created;
    int has_windows;
    long windows[FQ_MAX_COMPONENTS][4]; /* per component: first row, first column, rows, columns */
};

static struct fq_entropy *fq_state(j_decompress_ptr cinfo) { return &((struct session *)cinfo)->entropy; }

/* A corrupt-data condition found by our decoder: recorded like libjpeg's warnings. Decoding goes on (the
 * rest of the restart interval is skipped, so damage costs less than data), as in the Python decoder: both
 * backends then report the same conditions and, past the scan limit, the same error. Without a libjpeg
 * session (cinfo NULL: the direct path) it only marks the decoder's state damaged: that path then gives up. */
static void fq_warn(j_decompress_ptr cinfo, struct fq_entropy *e, const char *text) {
    if (cinfo == NULL) {
        e->damaged = 1;
        return;
    }
    struct reader_error *err = (struct reader_error *)cinfo->err;
    if (err->stopped) {
        return;
    }
    if (err->n_warnings < MAX_WARNINGS) {
        snprintf(err->warnings[err->n_warnings], JMSG_LENGTH_MAX, "%s", text);
    }
    err->n_warnings++;
    cinfo->err->num_warnings++;
}

/* The bit reader, in locals of the decoding functions (copied in and out of fq_entropy once per MCU, so the
 * compiler keeps it in registers): the low `nbits` bits of acc are unread, the last `zeros` of them are zero
 * fill past a marker; next/left: the source position (libjpeg's, or the direct path's buffer); marker: the
 * marker that ended the data, 0 while none (libjpeg's unread_marker, copied in and out with the rest), or
 * FQ_END_OF_DATA where the direct path's buffer ran out. */
struct fq_bitbuf {
    uint64_t acc;
    const JOCTET *next;
    size_t left;
    int nbits, zeros;
    int marker;
};

#define FQ_END_OF_DATA 0x100 /* no marker byte: the direct path's data ended (damage: it then gives up) */

/* One byte of the source (libjpeg's memory source supplies a fake EOI, with its warning, past the end; the
 * direct path, cinfo NULL, marks the end of its buffer as a marker of its own and reads zero bytes). */
static int fq_byte(j_decompress_ptr cinfo, struct fq_bitbuf *b) {
    if (b->left == 0) {
        if (cinfo == NULL) {
            b->marker = FQ_END_OF_DATA;
            return 0;
        }
        cinfo->src->next_input_byte = b->next;
        cinfo->src->bytes_in_buffer = 0;
        (void)(*cinfo->src->fill_input_buffer)(cinfo);
        b->next = cinfo->src->next_input_byte;
        b->left = cinfo->src->bytes_in_buffer;
    }
    b->left--;
    return *b->next++;
}

/* Fill to at least 57 bits: data bytes until a marker (stuffed FF 00 is a data FF), zero bits after it. */
static struct fq_bitbuf __attribute__((noinline)) fq_fill_slow(j_decompress_ptr cinfo, struct fq_bitbuf b) {
    while (b.nbits <= 56) {
        int c = 0;
        if (b.marker == 0) {
            c = fq_byte(cinfo, &b);
            if (c == 0xFF) {
                do {
                    c = fq_byte(cinfo, &b);
                } while (c == 0xFF);
                if (c == 0) {
                    c = 0xFF;
                } else {
                    b.marker = c; /* the end of the segment: libjpeg's marker reader takes it */
                    c = 0;
                }
            }
            if (b.marker == FQ_END_OF_DATA) {
                c = 0; /* (a last 0xFF byte read as stuffed data: the direct path gives up at this marker) */
            }
        }
        if (b.marker != 0) {
            b.zeros += 8;
        }
        b.acc = (b.acc << 8) | (uint64_t)c;
        b.nbits += 8;
    }
    return b;
}

/* At least n (<= 57) bits in the buffer: plain data bytes inline, anything else (0xFF, the end) out of line. */
static inline __attribute__((always_inline)) void fq_need(j_decompress_ptr cinfo, struct fq_bitbuf *b, int n) {
    if (b->nbits >= n) {
        return;
    }
    if (b->marker == 0) {
        if (b->left >= 8) {
            /* as many whole bytes as fit at once when none of them is 0xFF (the usual case) */
            uint64_t word;
            memcpy(&word, b->next, sizeof word);
            word = __builtin_bswap64(word); /* big-endian: the next byte on top */
            const int nbytes = (63 - b->nbits) >> 3; /* 4..7: nbits < n <= 32 here */
            const uint64_t inverted = ~word;         /* a 0xFF byte of word is a zero byte here */
            uint64_t zero_bytes = (inverted - 0x0101010101010101ULL) & ~inverted & 0x8080808080808080ULL;
            zero_bytes &= ~0ULL << (64 - 8 * nbytes); /* only the bytes taken (false alarms: the byte loop) */
            if (zero_bytes == 0) {
                b->acc = (b->acc << (8 * nbytes)) | (word >> (64 - 8 * nbytes));
                b->nbits += 8 * nbytes;
                b->next += nbytes;
                b->left -= (size_t)nbytes;
                return;
            }
        }
        while (b->nbits <= 56 && b->left > 0 && *b->next != 0xFF) {
            b->acc = (b->acc << 8) | *b->next++;
            b->left--;
            b->nbits += 8;
        }
    }
    if (b->nbits < n) {
        *b = fq_fill_slow(cinfo, *b);
    }
}

/* n (1..16) bits; the caller made sure they are in the buffer */
static inline __attribute__((always_inline)) int fq_bits(struct fq_bitbuf *b, int n) {
    b->nbits -= n;
    return (int)((b->acc >> b->nbits) & ((1u << n) - 1));
}

/* s (1..15) bits as a signed magnitude-category value (T.81 F.2.2.1, EXTEND), without a branch: the sign
 * bit of a random coefficient is not predictable. */
static inline __attribute__((always_inline)) int fq_extend1(struct fq_bitbuf *b, int s) {
    const int v = fq_bits(b, s);
    const int below = (v - (1 << (s - 1))) >> 31; /* -1 for the negative half of the category, else 0 */
    return v + (below & ((int)(~0u << s) + 1));
}

/* as fq_extend1, for s in 0..15 (DC differences: category 0 is frequent) */
static inline __attribute__((always_inline)) int fq_extend(struct fq_bitbuf *b, int s) {
    return s == 0 ? 0 : fq_extend1(b, s);
}

/* Codes longer than the lookahead, by canonical code ranges per length: (length << 8) | symbol, or -1 for
 * no code of the table. (Takes the bits by value: the caller's bit buffer stays in registers.) */
static int __attribute__((noinline)) fq_huffman_long(uint64_t acc, int nbits, const struct fq_huff *d) {
    for (int l = FQ_LOOK + 1; l <= 16; l++) {
        const int32_t code = (int32_t)((acc >> (nbits - l)) & ((1u << l) - 1));
        if (code <= d->maxcode[l]) {
            return (l << 8) | d->symbols[(code + d->valoffset[l]) & 0xFF];
        }
    }
    return -1;
}

/* A Huffman symbol, or -1 for a bit string that is no code of the table; at least 16 bits are buffered. */
static inline __attribute__((always_inline)) int fq_huffman(struct fq_bitbuf *b, const struct fq_huff *d) {
    int entry = d->look[(b->acc >> (b->nbits - FQ_LOOK)) & ((1u << FQ_LOOK) - 1)];
    if (__builtin_expect(entry == 0, 0)) {
        entry = fq_huffman_long(b->acc, b->nbits, d);
        if (entry < 0) {
            return -1;
        }
    }
    b->nbits -= entry >> 8;
    return entry & 0xFF;
}

static void fq_corrupt(j_decompress_ptr cinfo, struct fq_entropy *e, const char *text) {
    e->insufficient = 1;
    fq_warn(cinfo, e, text);
}

/* Read up to the marker that ends the segment (libjpeg's marker reader then takes it from unread_marker);
 * 1 when data bytes were skipped on the way. */
static int fq_seek_marker(j_decompress_ptr cinfo, struct fq_bitbuf *b) {
    int skipped = 0;
    while (b->marker == 0) {
        int c = fq_byte(cinfo, b);
        if (c != 0xFF) {
            skipped = 1;
            continue;
        }
        do {
            c = fq_byte(cinfo, b);
        } while (c == 0xFF);
        if (c == 0) {
            skipped = 1; /* a stuffed data byte */
        } else if (b->marker == 0) {
            b->marker = c;
        }
    }
    return skipped;
}

/* At the end of a segment (restart interval or scan): it must have used its data up to the final partial
 * byte. Not reported for a segment already found corrupt (as the Python decoder does). */
static void fq_end_segment(j_decompress_ptr cinfo, struct fq_entropy *e, struct fq_bitbuf *b) {
    const int unused = b->nbits - b->zeros >= 8;
    b->acc = 0;
    b->nbits = b->zeros = 0;
    if ((fq_seek_marker(cinfo, b) || unused) && !e->insufficient) {
        fq_warn(cinfo, e, "Corrupt JPEG data: extraneous bytes before marker");
    }
}

static struct fq_bitbuf __attribute__((noinline)) fq_restart(j_decompress_ptr cinfo, struct fq_entropy *e,
                                                             struct fq_bitbuf bits) {
    struct fq_bitbuf *b = &bits;
    fq_end_segment(cinfo, e, b);
    cinfo->src->next_input_byte = b->next;
    cinfo->src->bytes_in_buffer = b->left;
    cinfo->unread_marker = b->marker;
    (void)(*cinfo->marker->read_restart_marker)(cinfo); /* warns and resynchronises on a wrong marker */
    b->next = cinfo->src->next_input_byte;
    b->left = cinfo->src->bytes_in_buffer;
    b->marker = cinfo->unread_marker;
    for (int i = 0; i < MAX_COMPS_IN_SCAN; i++) {
        e->pred[i] = 0;
    }
    e->eobrun = 0;
    e->restarts_to_go = cinfo->restart_interval;
    if (b->marker == 0) {
        e->insufficient = 0;
    }
    return bits;
}

/* After the scan's last MCU; the marker that ends the scan must not be a restart marker (more intervals
 * than the frame holds). */
static struct fq_bitbuf __attribute__((noinline)) fq_finish_scan(j_decompress_ptr cinfo, struct fq_entropy *e,
                                                                 struct fq_bitbuf bits) {
    fq_end_segment(cinfo, e, &bits);
    if (!e->insufficient && bits.marker >= JPEG_RST0 && bits.marker <= JPEG_RST0 + 7) {
        fq_warn(cinfo, e, "Corrupt JPEG data: more restart markers than restart intervals (extraneous data)");
    }
    return bits;
}

/* One block of a sequential scan; 0 on damage (reported). */
static inline __attribute__((always_inline)) int fq_sequential_block(j_decompress_ptr cinfo, struct fq_entropy *e,
                                                                     struct fq_bitbuf *b, int blk, JCOEF *block) {
    fq_need(cinfo, b, 32);
    int s = fq_huffman(b, e->dc[blk]);
    if (s < 0) {
        fq_corrupt(cinfo, e, "Corrupt JPEG data: bad Huffman code");
        return 0;
    }
    const int slot = e->slot[blk];
    /* unsigned sums: a corrupt file may overflow; the low 16 bits are what the other decoders keep */
    e->pred[slot] = (int)((unsigned)e->pred[slot] + (unsigned)fq_extend(b, s));
    block[0] = (JCOEF)e->pred[slot];
    const struct fq_huff *ac = e->ac[blk];
    for (int k = 1; k < DCTSIZE2; k++) {
        fq_need(cinfo, b, 32);
        const int32_t fast = ac->fast_ac[(b->acc >> (b->nbits - FQ_LOOK)) & ((1u << FQ_LOOK) - 1)];
        if (fast != 0) { /* a short code with its value: most coefficients */
            k += (fast >> 8) & 15;
            b->nbits -= fast & 31;
            if (k > DCTSIZE2 - 1) {
                fq_corrupt(cinfo, e, "Corrupt JPEG data: AC coefficient index past 63");
                return 0;
            }
            block[zigzag_to_natural[k]] = (JCOEF)(fast >> 16);
            continue;
        }
        const int rs = fq_huffman(b, ac);
        if (rs < 0) {
            fq_corrupt(cinfo, e, "Corrupt JPEG data: bad Huffman code");
            return 0;
        }
        const int r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            if (k > DCTSIZE2 - 1) {
                fq_corrupt(cinfo, e, "Corrupt JPEG data: AC coefficient index past 63");
                return 0;
            }
            block[zigzag_to_natural[k]] = (JCOEF)fq_extend1(b, s);
        } else if (r != 15) {
            break;
        } else {
            k += 15;
        }
    }
    return 1;
}

static int fq_dc_first_block(j_decompress_ptr cinfo, struct fq_entropy *e, struct fq_bitbuf *b, int blk,
                             JCOEF *block) {
    fq_need(cinfo, b, 32);
    const int s = fq_huffman(b, e->dc[blk]);
    if (s < 0) {
        fq_corrupt(cinfo, e, "Corrupt JPEG data: bad Huffman code");
        return 0;
    }
    const int slot = e->slot[blk];
    e->pred[slot] = (int)((unsigned)e->pred[slot] + (unsigned)fq_extend(b, s));
    block[0] = (JCOEF)(int)((unsigned)e->pred[slot] << cinfo->Al);
    return 1;
}

static int fq_ac_first_block(j_decompress_ptr cinfo, struct fq_entropy *e, struct fq_bitbuf *b, JCOEF *block) {
    if (e->eobrun > 0) {
        e->eobrun--;
        return 1;
    }
    const int se = cinfo->Se, al = cinfo->Al;
    const struct fq_huff *ac = e->ac[0];
    for (int k = cinfo->Ss; k <= se; k++) {
        fq_need(cinfo, b, 32);
        const int rs = fq_huffman(b, ac);
        if (rs < 0) {
            fq_corrupt(cinfo, e, "Corrupt JPEG data: bad Huffman code");
            return 0;
        }
        const int r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            if (k > se) {
                fq_corrupt(cinfo, e, "Corrupt JPEG data: AC coefficient index past the spectral band");
                return 0;
            }
            block[zigzag_to_natural[k]] = (JCOEF)(int)((unsigned)fq_extend1(b, s) << al);
        } else if (r == 15) {
            k += 15;
        } else {
            e->eobrun = (1u << r) + (unsigned)(r ? fq_bits(b, r) : 0) - 1u;
            break;
        }
    }
    return 1;
}

/* a correction bit for a coefficient with history (T.81 G.1.2.3) */
static inline void fq_refine(struct fq_bitbuf *b, JCOEF *coef, int p1) {
    if (fq_bits(b, 1) && !(*coef & p1)) {
        *coef = (JCOEF)(*coef + (*coef >= 0 ? p1 : -p1));
    }
}

static int fq_ac_refine_block(j_decompress_ptr cinfo, struct fq_entropy *e, struct fq_bitbuf *b, JCOEF *block) {
    const int se = cinfo->Se;
    const int p1 = 1 << cinfo->Al;
    int k = cinfo->Ss;
    if (e->eobrun == 0) {
        const struct fq_huff *ac = e->ac[0];
        while (k <= se) {
            fq_need(cinfo, b, 32);
            const int rs = fq_huffman(b, ac);
            if (rs < 0) {
                fq_corrupt(cinfo, e, "Corrupt JPEG data: bad Huffman code");
                return 0;
            }
            int r = rs >> 4, s = rs & 15;
            if (s) {
                if (s != 1) {
                    fq_corrupt(cinfo, e, "Corrupt JPEG data: AC refinement value of size other than 1");
                    return 0;
                }
                s = fq_bits(b, 1) ? p1 : -p1;
            } else if (r != 15) {
                e->eobrun = (1u << r) + (unsigned)(r ? fq_bits(b, r) : 0);
                break;
            }
            /* skip r zero-history coefficients, refining the nonzero ones passed on the way */
            while (k <= se) {
                JCOEF *coef = block + zigzag_to_natural[k];
                if (*coef) {
                    fq_need(cinfo, b, 16);
                    fq_refine(b, coef, p1);
                } else if (--r < 0) {
                    break;
                }
                k++;
            }
            if (s) {
                if (k > se) {
                    fq_corrupt(cinfo, e, "Corrupt JPEG data: AC refinement index past the spectral band");
                    return 0;
                }
                block[zigzag_to_natural[k]] = (JCOEF)s;
            }
            k++;
        }
    }
    if (e->eobrun > 0) {
        /* inside an end-of-band run: only correction bits for the coefficients already nonzero */
        for (; k <= se; k++) {
            JCOEF *coef = block + zigzag_to_natural[k];
            if (*coef) {
                fq_need(cinfo, b, 16);
                fq_refine(b, coef, p1);
            }
        }
        e->eobrun--;
    }
    return 1;
}

static boolean fq_decode_mcu(j_decompress_ptr cinfo, JBLOCKROW *MCU_data) {
    struct fq_entropy *e = fq_state(cinfo);
    struct fq_bitbuf b = {e->acc, cinfo->src->next_input_byte, cinfo->src->bytes_in_buffer, e->nbits, e->zeros,
                          cinfo->unread_marker};
    if (cinfo->restart_interval) {
        if (e->restarts_to_go == 0) {
            b = fq_restart(cinfo, e, b);
        }
        e->restarts_to_go--;
    }
    if (!e->insufficient) {
        const int n = cinfo->blocks_in_MCU;
        int ok = 1;
        switch (e->mode) {
        case FQ_SEQUENTIAL:
            for (int blk = 0; blk < n && ok; blk++) {
                ok = fq_sequential_block(cinfo, e, &b, blk, MCU_data[blk][0]);
            }
            break;
        case FQ_DC_FIRST:
            for (int blk = 0; blk < n && ok; blk++) {
                ok = fq_dc_first_block(cinfo, e, &b, blk, MCU_data[blk][0]);
            }
            break;
        case FQ_DC_REFINE:
            for (int blk = 0; blk < n; blk++) {
                fq_need(cinfo, &b, 16);
                if (fq_bits(&b, 1)) {
                    MCU_data[blk][0][0] = (JCOEF)(MCU_data[blk][0][0] | (1 << cinfo->Al));
                }
            }
            break;
        case FQ_AC_FIRST:
            ok = fq_ac_first_block(cinfo, e, &b, MCU_data[0][0]);
            break;
        case FQ_AC_REFINE:
            ok = fq_ac_refine_block(cinfo, e, &b, MCU_data[0][0]);
            break;
        }
        if (ok && b.nbits < b.zeros) {
            fq_corrupt(cinfo, e, "Corrupt JPEG data: premature end of data segment");
        }
    }
    if (--e->mcus_left == 0) {
        b = fq_finish_scan(cinfo, e, b);
    }
    cinfo->src->next_input_byte = b.next;
    cinfo->src->bytes_in_buffer = b.left;
    cinfo->unread_marker = b.marker;
    e->acc = b.acc;
    e->nbits = b.nbits;
    e->zeros = b.zeros;
    return TRUE;
}

/* Per scan, after the checks of fq_start_pass: our decoder's state for the scan. */
static void fq_scan_setup(j_decompress_ptr cinfo, struct fq_entropy *e) {
    const int dc_first = cinfo->Ss == 0 && cinfo->Ah == 0, dc_refine = cinfo->Ss == 0 && cinfo->Ah != 0;
    if (!cinfo->progressive_mode) {
        e->mode = FQ_SEQUENTIAL;
    } else if (cinfo->Ss == 0) {
        e->mode = dc_refine ? FQ_DC_REFINE : FQ_DC_FIRST;
    } else {
        e->mode = cinfo->Ah != 0 ? FQ_AC_REFINE : FQ_AC_FIRST;
    }
    const int need_dc = e->mode == FQ_SEQUENTIAL || dc_first, need_ac = e->mode == FQ_SEQUENTIAL || cinfo->Ss != 0;
    for (int b = 0; b < cinfo->blocks_in_MCU; b++) {
        const int slot = cinfo->MCU_membership[b];
        const jpeg_component_info *comp = cinfo->cur_comp_info[slot];
        e->slot[b] = slot;
        /* libjpeg's start_pass checked the table numbers and the tables this scan uses */
        e->dc[b] = need_dc ? fq_table(cinfo, cinfo->dc_huff_tbl_ptrs[comp->dc_tbl_no], 0) : NULL;
        e->ac[b] = need_ac && cinfo->Se > 0 ? fq_table(cinfo, cinfo->ac_huff_tbl_ptrs[comp->ac_tbl_no], 1) : NULL;
    }
    for (int i = 0; i < MAX_COMPS_IN_SCAN; i++) {
        e->pred[i] = 0;
    }
    e->acc = 0;
    e->nbits = e->zeros = 0;
    e->insufficient = 0;
    e->eobrun = 0;
    e->restarts_to_go = cinfo->restart_interval;
    e->mcus_left = (unsigned long)cinfo->MCUs_per_row * cinfo->MCU_rows_in_scan;
    cinfo->entropy->decode_mcu = fq_decode_mcu;
}

/* The table lookup of a sequential scan with libjpeg's checks: the table number in range and defined. */
static void fq_check_defined(j_decompress_ptr cinfo, int tblno, int is_ac) {
    const JHUFF_TBL *table = NULL;
    if (tblno >= 0 && tblno < NUM_HUFF_TBLS) {
        table = is_ac ? cinfo->ac_huff_tbl_ptrs[tblno] : cinfo->dc_huff_tbl_ptrs[tblno];
    }
    if (table == NULL) {
        ERREXIT1(cinfo, JERR_NO_HUFF_TABLE, tblno);
    }
    (void)fq_table(cinfo, table, is_ac); /* checks the table's contents when it is not cached yet */
}

/* Per scan. Progressive scans: libjpeg's own start_pass first (progression checks, the coef_bits it keeps).
 * Sequential scans: libjpeg's start_pass only checks and then builds lookup tables for its own decoder, which
 * never runs (on a CIFAR-sized file that costs a fifth of the read): the same checks here, with the same
 * warning and errors, and our cached tables. */
static void fq_start_pass(j_decompress_ptr cinfo) {
    struct fq_entropy *e = fq_state(cinfo);
    if (cinfo->progressive_mode) {
        (*e->libjpeg_start_pass)(cinfo);
    } else {
        if (cinfo->Ss != 0 || cinfo->Se != DCTSIZE2 - 1 || cinfo->Ah != 0 || cinfo->Al != 0) {
            WARNMS(cinfo, JWRN_NOT_SEQUENTIAL);
        }
        for (int ci = 0; ci < cinfo->comps_in_scan; ci++) {
            fq_check_defined(cinfo, cinfo->cur_comp_info[ci]->dc_tbl_no, 0);
            fq_check_defined(cinfo, cinfo->cur_comp_info[ci]->ac_tbl_no, 1);
        }
    }
    fq_scan_setup(cinfo, e);
}

/* Take over libjpeg's Huffman decoder once jpeg_read_coefficients has created it, before it starts the first
 * scan (session_start_input_pass). Arithmetic-coded files keep libjpeg's decoder, which reports its damage
 * itself. */
static void fq_install(j_decompress_ptr cinfo, struct fq_entropy *e) {
    if (cinfo->arith_code || cinfo->entropy == NULL) {
        return;
    }
    e->libjpeg_start_pass = cinfo->entropy->start_pass;
    cinfo->entropy->start_pass = fq_start_pass;
}

static const JOCTET fake_eoi[2] = {0xFF, JPEG_EOI};

static void window_init_source(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean window_fill_input_buffer(j_decompress_ptr cinfo) {
    struct window_source *src = (struct window_source *)cinfo->src;
    if (src->ended || src->pos >= src->size) {
        if (src->ended) {
            ((struct reader_error *)cinfo->err)->stopped = 1;
        } else {
            WARNMS(cinfo, JWRN_JPEG_EOF);
        }
        src->pub.next_input_byte = fake_eoi;
        src->pub.bytes_in_buffer = 2;
        return TRUE;
    }
    src->pub.next_input_byte = src->data + src->pos;
    src->pub.bytes_in_buffer = src->size - src->pos;
    src->pos = src->size;
    return TRUE;
}

/* jpeg_read_coefficients creates the entropy decoder, then starts the first scan through the input
 * controller's start_input_pass (later scans start inside libjpeg and call the entropy decoder's start_pass
 * directly): hooked there, our Huffman decoder takes over before any scan starts. */
static void session_start_input_pass(j_decompress_ptr cinfo) {
    struct session *s = (struct session *)cinfo;
    if (!s->entropy.installed) {
        s->entropy.installed = 1;
        if (!s->libjpeg_huffman) {
            fq_install(cinfo, &s->entropy);
        }
    }
    (*s->libjpeg_start_input_pass)(cinfo);
}

/* Before every iMCU row of jpeg_read_coefficients (the entropy decoder reloads its input position from
 * cinfo->src for every MCU): ends the data after a window's last row. */
static void session_progress(j_common_ptr common) {
    j_decompress_ptr cinfo = (j_decompress_ptr)common;
    struct session *s = (struct session *)cinfo;
    if (!s->has_windows) {
        return;
    }
    struct window_source *src = &s->source;
    if (src->stop_after >= 0 && !src->ended && (long)cinfo->input_iMCU_row > src->stop_after) {
        src->ended = 1;
        src->pub.bytes_in_buffer = 0;
        src->pos = src->size;
    }
}

static void window_skip_input_data(j_decompress_ptr cinfo, long num_bytes) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (num_bytes <= 0) {
        return;
    }
    while (num_bytes > (long)src->bytes_in_buffer) {
        num_bytes -= (long)src->bytes_in_buffer;
        (void)(*src->fill_input_buffer)(cinfo);
    }
    src->next_input_byte += num_bytes;
    src->bytes_in_buffer -= (size_t)num_bytes;
}

static void window_term_source(j_decompress_ptr cinfo) { (void)cinfo; }

static void window_src(struct session *s, const unsigned char *data, unsigned long size) {
    struct window_source *src = &s->source;
    src->pub.init_source = window_init_source;
    src->pub.fill_input_buffer = window_fill_input_buffer;
    src->pub.skip_input_data = window_skip_input_data;
    src->pub.resync_to_restart = jpeg_resync_to_restart;
    src->pub.term_source = window_term_source;
    src->pub.bytes_in_buffer = 0;
    src->pub.next_input_byte = NULL;
    src->data = data;
    src->size = size;
    src->pos = 0;
    src->stop_after = -1;
    src->ended = 0;
    s->cinfo.src = &src->pub;
}

static void reader_error_exit(j_common_ptr cinfo) {
    struct reader_error *err = (struct reader_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->error);
    longjmp(err->jump, 1);
}

static void reader_emit_message(j_common_ptr cinfo, int msg_level) {
    struct reader_error *err = (struct reader_error *)cinfo->err;
    if (msg_level < 0) {
        if (err->stopped) {
            return; /* after a window's deliberate end of data: the missing rest is not damage */
        }
        const int code = cinfo->err->msg_code;
        if (code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM) {
            return; /* notes on metadata, not damage */
        }
        if (err->n_warnings < MAX_WARNINGS) {
            (*cinfo->err->format_message)(cinfo, err->warnings[err->n_warnings]);
        }
        err->n_warnings++;
        cinfo->err->num_warnings++;
    } else if (cinfo->err->msg_code == JTRC_SOS) {
        /* A file with thousands of scans over a large frame is a CPU bomb: cap the scans. */
        if (++err->n_scans > err->max_scans) {
            snprintf(err->error, sizeof err->error, "JPEG has more than %ld scans", err->max_scans);
            longjmp(err->jump, 1);
        }
    }
}

static void reader_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* The bytes a read allocates, from the frame header: libjpeg's int16 coefficient arrays (whole MCUs) and
 * the float32 planes when this module allocates them. 0 (with the error set) when over s->max_bytes. */
static int check_budget(struct session *s) {
    j_decompress_ptr cinfo = &s->cinfo;
    if (s->max_bytes == 0) {
        return 1;
    }
    unsigned long long total = 0;
    for (int ci = 0; ci < cinfo->num_components; ci++) {
        const jpeg_component_info *comp = &cinfo->comp_info[ci];
        const unsigned long long h = (unsigned long long)comp->h_samp_factor, v = (unsigned long long)comp->v_samp_factor;
        const unsigned long long cols = (comp->width_in_blocks + h - 1) / h * h;
        const unsigned long long rows = (comp->height_in_blocks + v - 1) / v * v;
        total += rows * cols * sizeof(JBLOCK); /* each factor < 2^32: no overflow */
        if (!s->has_outs) {
            unsigned long long out_rows = comp->height_in_blocks, out_cols = comp->width_in_blocks;
            if (s->has_windows) {
                out_rows = (unsigned long long)s->windows[ci][2]; /* checked later; bounded by a long */
                out_cols = (unsigned long long)s->windows[ci][3];
                out_rows = out_rows > comp->height_in_blocks ? comp->height_in_blocks : out_rows;
                out_cols = out_cols > comp->width_in_blocks ? comp->width_in_blocks : out_cols;
            }
            if (ci > 0) {
                out_rows = (out_rows + (unsigned)s->dv - 1) / (unsigned)s->dv;
                out_cols = (out_cols + (unsigned)s->dh - 1) / (unsigned)s->dh;
            }
            total += out_rows * out_cols * DCTSIZE2 * sizeof(float);
        }
    }
    if (total > s->max_bytes) {
        snprintf(s->err.error, sizeof s->err.error, "%s a %ux%u JPEG needs %llu bytes, the limit is %llu",
                 OVER_BUDGET, cinfo->image_width, cinfo->image_height, total, s->max_bytes);
        return 0;
    }
    return 1;
}

/* Under strict reading, refuse before allocating anything a file whose entropy-coded data is too short
 * for its first scan: every block of a sequential scan takes at least 2 bits (a DC and an end-of-block
 * code of at least one bit each) and every block of a progressive DC scan at least one. So a few-KB file
 * claiming a huge frame costs nothing. 0 (with the error and a warning set) when the data is too short. */
static int first_scan_fits(struct session *s) {
    j_decompress_ptr cinfo = &s->cinfo;
    const int bits_per_block = !cinfo->progressive_mode ? 2 : (cinfo->Ss == 0 && cinfo->Ah == 0 ? 1 : 0);
    /* arithmetic coding has no such bound: an adaptive decision may cost far less than a bit */
    if (bits_per_block == 0 || cinfo->comps_in_scan < 1 || cinfo->arith_code) {
        return 1;
    }
    unsigned long long blocks = 0;
    if (cinfo->comps_in_scan == 1) {
        const jpeg_component_info *comp = cinfo->cur_comp_info[0];
        blocks = (unsigned long long)comp->width_in_blocks * comp->height_in_blocks;
    } else {
        const unsigned long long mcu_cols =
            (cinfo->image_width + 8ULL * cinfo->max_h_samp_factor - 1) / (8ULL * cinfo->max_h_samp_factor);
        const unsigned long long mcu_rows =
            (cinfo->image_height + 8ULL * cinfo->max_v_samp_factor - 1) / (8ULL * cinfo->max_v_samp_factor);
        unsigned long long per_mcu = 0;
        for (int i = 0; i < cinfo->comps_in_scan; i++) {
            per_mcu += (unsigned long long)cinfo->cur_comp_info[i]->h_samp_factor * cinfo->cur_comp_info[i]->v_samp_factor;
        }
        blocks = mcu_cols * mcu_rows * per_mcu;
    }
    const unsigned long long have = 8ULL * cinfo->src->bytes_in_buffer;
    if (have >= blocks * bits_per_block) {
        return 1;
    }
    snprintf(s->err.error, sizeof s->err.error,
             "Premature end of JPEG file: %llu bytes of entropy-coded data cannot hold the first scan's %llu blocks",
             have / 8, blocks);
    if (s->err.n_warnings < MAX_WARNINGS) {
        snprintf(s->err.warnings[s->err.n_warnings], JMSG_LENGTH_MAX, "%s", s->err.error);
    }
    s->err.n_warnings++;
    return 0;
}

/* Phase 1, without the GIL: headers and all scans into libjpeg's coefficient arrays. 1 on success. */
static int decode_coefficients(struct session *s, const unsigned char *data, unsigned long size,
                               unsigned long max_memory) {
    s->cinfo.err = jpeg_std_error(&s->err.pub);
    s->err.pub.error_exit = reader_error_exit;
    s->err.pub.emit_message = reader_emit_message;
    s->err.pub.output_message = reader_output_message;
    if (setjmp(s->err.jump)) {
        return 0;
    }
    jpeg_create_decompress(&s->cinfo);
    s->created = 1;
    s->cinfo.mem->max_memory_to_use = (long)max_memory;
    if (s->has_windows) {
        window_src(s, data, size);
    } else {
        jpeg_mem_src(&s->cinfo, data, size);
    }
    if (s->has_windows) { /* the monitor only ends a window's data early */
        s->source.progress.progress_monitor = session_progress;
        s->cinfo.progress = &s->source.progress;
    }
    jpeg_read_header(&s->cinfo, TRUE);
    if (s->cinfo.num_components > FQ_MAX_COMPONENTS || s->cinfo.data_precision != 8) {
        snprintf(s->err.error, sizeof s->err.error, "unsupported JPEG (%d components, %d-bit)",
                 s->cinfo.num_components, s->cinfo.data_precision);
        return 0;
    }
    if (!check_budget(s) || (s->err.strict && !first_scan_fits(s))) {
        return 0;
    }
    s->libjpeg_start_input_pass = s->cinfo.inputctl->start_input_pass;
    s->cinfo.inputctl->start_input_pass = session_start_input_pass;
    if (s->has_windows) {
        /* the windows must lie in the block grids; the last iMCU row any of them needs */
        long last = 0;
        for (int ci = 0; ci < s->cinfo.num_components; ci++) {
            const long *wd = s->windows[ci];
            jpeg_component_info *comp = &s->cinfo.comp_info[ci];
            const long height = (long)comp->height_in_blocks, width = (long)comp->width_in_blocks;
            /* subtractions, not sums: no overflow for any long the caller passes */
            if (wd[0] < 0 || wd[1] < 0 || wd[2] < 1 || wd[3] < 1 || wd[0] > height || wd[1] > width ||
                wd[2] > height - wd[0] || wd[3] > width - wd[1]) {
                snprintf(s->err.error, sizeof s->err.error, "block window outside the component's block grid");
                return 0;
            }
            long row = (wd[0] + wd[2] - 1) / comp->v_samp_factor;
            last = row > last ? row : last;
        }
        /* Only a single sequential scan holding every component decodes the rows in order, once. */
        if (!s->cinfo.progressive_mode && s->cinfo.comps_in_scan == s->cinfo.num_components) {
            s->source.stop_after = last;
        }
    }
    s->arrays = jpeg_read_coefficients(&s->cinfo);
    return 1;
}

/* Where a component's planes go: channel k (the first `channels` in the output order), block row r,
 * block column c of the window is base[k * plane_stride + r * row_stride + c]. */
struct plane_out {
    float *base;
    size_t plane_stride, row_stride;
    int channels;
};

/* How a component's quantised blocks become float32 channels: channel k takes natural coefficient source[k]
 * times step[k] (the quantisation step of that coefficient); natural coefficient i goes to channel target[i]
 * with step natural_step[i]. quant: the table in natural order (NULL: zeros). */
struct plane_steps {
    int source[DCTSIZE2], target[DCTSIZE2];
    float step[DCTSIZE2], natural_step[DCTSIZE2];
};

static void plane_steps_init(struct plane_steps *p, const UINT16 *quant, int zigzag) {
    for (int k = 0; k < DCTSIZE2; k++) {
        p->source[k] = zigzag ? zigzag_to_natural[k] : k;
        p->step[k] = quant != NULL ? (float)quant[p->source[k]] : 0.0f;
        p->target[p->source[k]] = k;
        p->natural_step[p->source[k]] = p->step[k];
    }
}

#if defined(__SSE2__)
/* 8 blocks at a time (n = 8, or fewer, n = 1..7, with the other rows ignored): each row v of their coefficients
 * transposed in registers, so each channel's n values are stored with one or two vector stores (n < 4: one 2-float
 * and/or one 1-float store, nothing past the n values). The same products as the scalar loop: int16 -> float32
 * exactly, one float32 multiplication each. */
/* Row v of blocks 0..n-1 (n <= 8; missing blocks read as zeros) transposed: t[u] holds coefficient (v, u) of
 * the 8 blocks, one int16 lane per block. */
static inline __attribute__((always_inline)) void transpose_row8(const JBLOCK *blocks, int n, int v, __m128i t[8]) {
    __m128i r[8];
    for (int j = 0; j < 8; j++) {
        r[j] = j < n ? _mm_loadu_si128((const __m128i *)(blocks[j] + 8 * v)) : _mm_setzero_si128();
    }
    const __m128i a0 = _mm_unpacklo_epi16(r[0], r[1]), a1 = _mm_unpackhi_epi16(r[0], r[1]);
    const __m128i a2 = _mm_unpacklo_epi16(r[2], r[3]), a3 = _mm_unpackhi_epi16(r[2], r[3]);
    const __m128i a4 = _mm_unpacklo_epi16(r[4], r[5]), a5 = _mm_unpackhi_epi16(r[4], r[5]);
    const __m128i a6 = _mm_unpacklo_epi16(r[6], r[7]), a7 = _mm_unpackhi_epi16(r[6], r[7]);
    const __m128i b0 = _mm_unpacklo_epi32(a0, a2), b1 = _mm_unpackhi_epi32(a0, a2);
    const __m128i b2 = _mm_unpacklo_epi32(a1, a3), b3 = _mm_unpackhi_epi32(a1, a3);
    const __m128i b4 = _mm_unpacklo_epi32(a4, a6), b5 = _mm_unpackhi_epi32(a4, a6);
    const __m128i b6 = _mm_unpacklo_epi32(a5, a7), b7 = _mm_unpackhi_epi32(a5, a7);
    t[0] = _mm_unpacklo_epi64(b0, b4);
    t[1] = _mm_unpackhi_epi64(b0, b4);
    t[2] = _mm_unpacklo_epi64(b1, b5);
    t[3] = _mm_unpackhi_epi64(b1, b5);
    t[4] = _mm_unpacklo_epi64(b2, b6);
    t[5] = _mm_unpackhi_epi64(b2, b6);
    t[6] = _mm_unpacklo_epi64(b3, b7);
    t[7] = _mm_unpackhi_epi64(b3, b7);
}

static void write_blocks_simd(const JBLOCK *blocks, int n, const struct plane_out *o, float *dst0,
                              const struct plane_steps *p) {
    for (int v = 0; v < 8; v++) {
        __m128i t[8];
        transpose_row8(blocks, n, v, t);
        for (int u = 0; u < 8; u++) {
            const int channel = p->target[8 * v + u];
            if (channel >= o->channels) {
                continue;
            }
            const __m128 q = _mm_set1_ps(p->natural_step[8 * v + u]);
            float *dst = dst0 + (size_t)channel * o->plane_stride;
            /* sign extension: each int16 into the high half of an int32, shifted down arithmetically */
            const __m128i lo = _mm_srai_epi32(_mm_unpacklo_epi16(t[u], t[u]), 16);
            const __m128 first = _mm_mul_ps(_mm_cvtepi32_ps(lo), q);
            if (n >= 4) {
                _mm_storeu_ps(dst, first);
            } else { /* the last 1..3 blocks of a row (a CIFAR image's chroma rows are 2 blocks) */
                if (n >= 2) {
                    _mm_storel_pi((__m64 *)dst, first);
                }
                if (n & 1) {
                    _mm_store_ss(dst + n - 1, n == 1 ? first : _mm_movehl_ps(first, first));
                }
            }
            if (n == 8) {
                const __m128i hi = _mm_srai_epi32(_mm_unpackhi_epi16(t[u], t[u]), 16);
                _mm_storeu_ps(dst + 4, _mm_mul_ps(_mm_cvtepi32_ps(hi), q));
            }
        }
    }
}
#endif

#if FQ_AVX2
static int fq_has_avx2; /* set once when the module loads */

/* write_blocks_simd for 8 blocks with one 8-float store per channel (the same products) */
__attribute__((target("avx2"))) static void write_blocks_avx2(const JBLOCK *blocks, const struct plane_out *o,
                                                              float *dst0, const struct plane_steps *p) {
    for (int v = 0; v < 8; v++) {
        __m128i t[8];
        transpose_row8(blocks, 8, v, t);
        for (int u = 0; u < 8; u++) {
            const int channel = p->target[8 * v + u];
            if (channel < o->channels) {
                const __m256 q = _mm256_set1_ps(p->natural_step[8 * v + u]);
                const __m256 values = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(t[u]));
                _mm256_storeu_ps(dst0 + (size_t)channel * o->plane_stride, _mm256_mul_ps(values, q));
            }
        }
    }
}
#endif

/* One block row (w blocks) dequantised and transposed into output block row `row` of o. */
static void write_block_row(const JBLOCK *blocks, size_t w, const struct plane_out *o, size_t row,
                            const struct plane_steps *p) {
    size_t done = 0;
#if FQ_AVX2
    if (fq_has_avx2) {
        for (; done + 8 <= w; done += 8) {
            write_blocks_avx2(blocks + done, o, o->base + row * o->row_stride + done, p);
        }
    }
#endif
#if defined(__SSE2__)
    for (; done + 4 <= w; done += done + 8 <= w ? 8 : 4) {
        write_blocks_simd(blocks + done, done + 8 <= w ? 8 : 4, o, o->base + row * o->row_stride + done, p);
    }
    if (done < w) {
        write_blocks_simd(blocks + done, (int)(w - done), o, o->base + row * o->row_stride + done, p);
    }
#else
    (void)done;
    for (int k = 0; k < o->channels; k++) { /* without SSE2: the scalar loop */
        float *dst = o->base + (size_t)k * o->plane_stride + row * o->row_stride;
        const int src = p->source[k];
        const float q = p->step[k];
        /* Both factors are exact in float32 (|coef| < 2^15, step < 2^16), so the product is the
         * exact integer product rounded once, as NumPy's float32 product is. */
        for (size_t x = 0; x < w; x++) {
            dst[x] = (float)blocks[x][src] * q;
        }
    }
#endif
}

/* Phase 2, without the GIL: dequantise and transpose component ci's window into o (float32). */
static int write_plane(struct session *s, int ci, const struct plane_out *o, int zigzag, const long *window) {
    if (setjmp(s->err.jump)) {
        return 0;
    }
    j_decompress_ptr cinfo = &s->cinfo;
    jpeg_component_info *comp = &cinfo->comp_info[ci];
    JQUANT_TBL *table = comp->quant_table != NULL ? comp->quant_table : cinfo->quant_tbl_ptrs[comp->quant_tbl_no];
    /* window: first block row, first block column, rows, columns of the component's block grid */
    size_t r0 = (size_t)window[0], c0 = (size_t)window[1], h = (size_t)window[2], w = (size_t)window[3];
    struct plane_steps steps;
    plane_steps_init(&steps, table != NULL ? table->quantval : NULL, zigzag);
    for (JDIMENSION row = 0; row < h; row++) {
        JBLOCKARRAY rows =
            (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, s->arrays[ci], (JDIMENSION)(r0 + row), 1, FALSE);
        write_block_row(rows[0] + c0, w, o, row, &steps);
    }
    return 1;
}

/* The 2-pixel averaging map K (8 x 16: output frequency q <- frequency v of block j, column 8j + v) is
 * mirror-symmetric: reflecting the 16 input pixels swaps the blocks and multiplies frequency v by (-1)^v,
 * and reflects the 8 output pixels, multiplying q by (-1)^q, so K[q][8 + v] = (-1)^(q + v) K[q][v].
 * With P[v] = x0[v] + (-1)^v x1[v] and M[v] = x0[v] - (-1)^v x1[v] (x0, x1: the two blocks), one
 * output frequency is then sum_v A[q][v] P[v] for even q and sum_v A[q][v] M[v] for odd q, A = K[:, :8]:
 * half the multiplications of the plain product. */

/* Vertical pass over one column: rows v of blocks x0 (top) and x1 (bottom, NULL: no second block) ->
 * t[q][u], dequantised with step. All-zero row pairs are skipped (most of a chroma block's high
 * frequencies). x1 == x0 repeats the last block of an odd count, as the Python maps do. */
static void downsample_vertical(const JCOEF *x0, const JCOEF *x1, const float *step, const float a[8][8],
                                float t[8][8]) {
    for (int q = 0; q < 8; q++) {
        for (int u = 0; u < 8; u++) {
            t[q][u] = 0.0f; /* a loop, not memset: the compiler writes it with a few vector stores */
        }
    }
    for (int v = 0; v < 8; v++) {
        const JCOEF *r0 = x0 + 8 * v;
        const JCOEF *r1 = x1 != NULL ? x1 + 8 * v : NULL;
        int nonzero = r0[0] | r0[1] | r0[2] | r0[3] | r0[4] | r0[5] | r0[6] | r0[7];
        if (r1 != NULL) {
            nonzero |= r1[0] | r1[1] | r1[2] | r1[3] | r1[4] | r1[5] | r1[6] | r1[7];
        }
        if (!nonzero) {
            continue;
        }
        const float *sv = step + 8 * v;
        float even[8], odd[8]; /* the inputs of even and odd output frequencies: P and M above */
        if (r1 == NULL) {
            for (int u = 0; u < 8; u++) {
                t[v][u] = (float)r0[u] * sv[u];
            }
            continue;
        }
        const float sign = (v & 1) ? -1.0f : 1.0f;
        for (int u = 0; u < 8; u++) {
            const float a0 = (float)r0[u] * sv[u], a1 = sign * ((float)r1[u] * sv[u]);
            even[u] = a0 + a1;
            odd[u] = a0 - a1;
        }
        for (int q = 0; q < 8; q += 2) {
            const float ke = a[q][v], ko = a[q + 1][v];
            for (int u = 0; u < 8; u++) {
                t[q][u] += ke * even[u];
                t[q + 1][u] += ko * odd[u];
            }
        }
    }
}

/* Horizontal pass: t0, t1 (left, right; t1 NULL: no second block) -> y[q][p] = sum_i,u K[p][8i + u] t_i[q][u].
 * With GCC/clang vector types each output row accumulates in two 4-float registers (a plain float[8]
 * accumulator stays in memory at -O2 and every update waits for the previous store). */
#if defined(__GNUC__)
typedef float fq_v4 __attribute__((vector_size(16)));
static inline fq_v4 fq_load4(const float *p) {
    fq_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
#endif

static void downsample_horizontal(const float t0[8][8], const float t1[8][8], const float kt[16][8],
                                  float y[8][8]) {
    if (t1 == NULL) {
        memcpy(y, t0, 8 * sizeof y[0]);
        return;
    }
#if defined(__GNUC__)
    fq_v4 lo[16], hi[16];
    for (int i = 0; i < 16; i++) {
        lo[i] = fq_load4(kt[i]);
        hi[i] = fq_load4(kt[i] + 4);
    }
    for (int q = 0; q < 8; q++) {
        fq_v4 acc_lo = {0.0f, 0.0f, 0.0f, 0.0f}, acc_hi = acc_lo;
        for (int u = 0; u < 8; u++) {
            const float left = t0[q][u], right = t1[q][u];
            acc_lo += lo[u] * left + lo[8 + u] * right;
            acc_hi += hi[u] * left + hi[8 + u] * right;
        }
        memcpy(y[q], &acc_lo, sizeof acc_lo);
        memcpy(y[q] + 4, &acc_hi, sizeof acc_hi);
    }
#else
    for (int q = 0; q < 8; q++) {
        for (int p = 0; p < 8; p++) {
            float acc = 0.0f;
            for (int u = 0; u < 8; u++) {
                acc += kt[u][p] * t0[q][u] + kt[8 + u][p] * t1[q][u];
            }
            y[q][p] = acc;
        }
    }
#endif
}

/* What downsampling a component's blocks needs: steps in natural order, the kernel's parts, where each
 * natural frequency goes in the output order. */
struct down_map {
    int dh, dv;
    float step[DCTSIZE2], kt[16][8], a[8][8]; /* kt: the kernel transposed; a: its left half */
    int target[DCTSIZE2];                     /* output channel of natural frequency k */
};

static void down_map_init(struct down_map *m, const UINT16 *quant, int zigzag, int dh, int dv, const float *kernel) {
    m->dh = dh;
    m->dv = dv;
    for (int k = 0; k < DCTSIZE2; k++) {
        m->step[k] = quant != NULL ? (float)quant[k] : 0.0f;
        m->target[zigzag ? zigzag_to_natural[k] : k] = k;
    }
    for (int i = 0; i < 16; i++) {
        for (int q = 0; q < 8; q++) {
            m->kt[i][q] = kernel[q * 16 + i];
            if (i < 8) {
                m->a[q][i] = kernel[q * 16 + i];
            }
        }
    }
}

/* Output block row `row` of o from one or two input block rows (top, bottom: the same row when the window's
 * row count is odd and this is its last row, or when dv is 1), columns c0 .. c0 + w - 1 of the window. */
static void write_downsampled_row(const JBLOCK *top, const JBLOCK *bottom, long c0, long w, const struct plane_out *o,
                                  size_t row, const struct down_map *m) {
    const int dh = m->dh;
    const long ow = (w + dh - 1) / dh;
    for (long col = 0; col < ow; col++) {
        const long left = c0 + col * dh;
        const long cols = (dh == 2 && col * 2 + 1 < w) ? 2 : 1;
        float t[2][8][8], y[8][8];
        for (long i = 0; i < dh; i++) {
            const long column = left + (i < cols ? i : cols - 1);
            const JCOEF *x0 = top[column];
            const JCOEF *x1 = m->dv == 2 ? bottom[column] : NULL;
            downsample_vertical(x0, x1, m->step, (const float(*)[8])m->a, t[i]);
        }
        downsample_horizontal((const float(*)[8])t[0], dh == 2 ? (const float(*)[8])t[1] : NULL,
                              (const float(*)[8])m->kt, y);
        float *dst = o->base + row * o->row_stride + (size_t)col;
        const float *flat = &y[0][0];
        for (int k = 0; k < DCTSIZE2; k++) {
            if (m->target[k] < o->channels) {
                dst[(size_t)m->target[k] * o->plane_stride] = flat[k];
            }
        }
    }
}

/* Phase 2 with chroma downsampling, without the GIL: like write_plane, but every dv x dh group of the
 * window's blocks (dv, dh in {1, 2}; the last block row/column repeated when the window's count is odd)
 * becomes one block of their dv x dh pixel averages, computed in the DCT domain with the separable
 * 8x16 map `kernel` (freqnets.jpeg.resample.downsample_kernel(2)): columns first (vertical), then rows. */
static int write_plane_downsampled(struct session *s, int ci, const struct plane_out *o, int zigzag,
                                   const long *window, int dh, int dv, const float *kernel) {
    if (setjmp(s->err.jump)) {
        return 0;
    }
    j_decompress_ptr cinfo = &s->cinfo;
    jpeg_component_info *comp = &cinfo->comp_info[ci];
    JQUANT_TBL *table = comp->quant_table != NULL ? comp->quant_table : cinfo->quant_tbl_ptrs[comp->quant_tbl_no];
    const long r0 = window[0], c0 = window[1], h = window[2], w = window[3];
    const long oh = (h + dv - 1) / dv;
    struct down_map map;
    down_map_init(&map, table != NULL ? table->quantval : NULL, zigzag, dh, dv, kernel);
    for (long row = 0; row < oh; row++) {
        const long top = r0 + row * dv;
        const long rows = (dv == 2 && row * 2 + 1 < h) ? 2 : 1;
        /* one row per access (libjpeg allows at most v_samp_factor rows); the arrays are wholly in memory
         * (max_memory covers them and there is no backing store), so earlier row pointers stay valid */
        JBLOCKROW blocks[2];
        for (long j = 0; j < rows; j++) {
            blocks[j] = (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, s->arrays[ci],
                                                          (JDIMENSION)(top + j), 1, FALSE)[0];
        }
        write_downsampled_row(blocks[0], blocks[rows - 1], c0, w, o, (size_t)row, &map);
    }
    return 1;
}

static void close_session(struct session *s) {
    if (s->created) {
        jpeg_destroy_decompress(&s->cinfo);
    }
    free(s);
}

static PyObject *warnings_list(struct session *s) {
    PyObject *warnings = PyList_New(0);
    for (int i = 0; warnings != NULL && i < s->err.n_warnings && i < MAX_WARNINGS; i++) {
        PyObject *text = PyUnicode_FromString(s->err.warnings[i]);
        if (text == NULL || PyList_Append(warnings, text) < 0) {
            Py_XDECREF(text);
            Py_CLEAR(warnings);
        } else {
            Py_DECREF(text);
        }
    }
    return warnings;
}

static PyObject *raise_libjpeg(struct session *s) {
    /* RuntimeError(message, warnings before the error): the caller tells truncation from corruption. */
    PyObject *warnings = warnings_list(s);
    if (warnings != NULL) {
        PyObject *error = Py_BuildValue("(sN)", s->err.error, warnings);
        if (error != NULL) {
            PyErr_SetObject(PyExc_RuntimeError, error);
            Py_DECREF(error);
        }
    }
    return NULL;
}

/* Caller-given outputs: per component a writable buffer and where the window goes in it (float32 units). */
struct given_outs {
    int n;
    Py_buffer buffers[FQ_MAX_COMPONENTS];
    Py_ssize_t offset[FQ_MAX_COMPONENTS], channels[FQ_MAX_COMPONENTS];
    Py_ssize_t plane_stride[FQ_MAX_COMPONENTS], row_stride[FQ_MAX_COMPONENTS];
};

static void release_outs(struct given_outs *g) {
    for (int i = 0; i < g->n; i++) {
        PyBuffer_Release(&g->buffers[i]);
    }
    g->n = 0;
}

/* A writable, C-contiguous, 4-byte aligned float32 buffer of obj, or 0 with an exception. */
static int get_float_buffer(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return 0;
    }
    const char *format = view->format != NULL ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') {
        format++;
    }
    if (strcmp(format, "f") != 0 || view->itemsize != (Py_ssize_t)sizeof(float) ||
        ((uintptr_t)view->buf % sizeof(float)) != 0) {
        PyErr_SetString(PyExc_ValueError, "outs: buffers must be writable, aligned, C-contiguous float32");
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* outs: one (buffer, offset, channels, plane_stride, row_stride) per component of the file. The
 * sequence and each entry are copied to tuples first, so that Python code run while converting the
 * numbers (__index__) cannot free what is being parsed. */
static int parse_outs(PyObject *arg, int n_components, struct given_outs *g) {
    g->n = 0;
    PyObject *seq = PySequence_Tuple(arg);
    if (seq == NULL) {
        return 0;
    }
    if (PyTuple_GET_SIZE(seq) != n_components) {
        PyErr_Format(PyExc_ValueError, "outs: %d entries for a JPEG with %d components", (int)PyTuple_GET_SIZE(seq),
                     n_components);
        Py_DECREF(seq);
        return 0;
    }
    for (int i = 0; i < n_components; i++) {
        int k = g->n;
        PyObject *buffer_obj;
        PyObject *item = PySequence_Tuple(PyTuple_GET_ITEM(seq, i));
        if (item == NULL || !PyArg_ParseTuple(item, "Onnnn", &buffer_obj, &g->offset[k], &g->channels[k],
                                              &g->plane_stride[k], &g->row_stride[k])) {
            Py_XDECREF(item);
            Py_DECREF(seq);
            release_outs(g);
            return 0;
        }
        int ok = get_float_buffer(buffer_obj, &g->buffers[k]);
        Py_DECREF(item); /* the buffer view keeps its object alive */
        if (!ok) {
            Py_DECREF(seq);
            release_outs(g);
            return 0;
        }
        g->n++;
        if (g->offset[k] < 0 || g->channels[k] < 0 || g->channels[k] > DCTSIZE2 || g->plane_stride[k] < 0 ||
            g->row_stride[k] < 0) {
            PyErr_SetString(PyExc_ValueError, "outs: negative offset or stride, or channels outside 0..64");
            Py_DECREF(seq);
            release_outs(g);
            return 0;
        }
    }
    Py_DECREF(seq);
    return 1;
}

/* The output of component ci for a rows x cols block window, after checking that every element written
 * lies inside the caller's buffer (with the GIL: raises ValueError and returns 0 otherwise). */
static int out_fits_check(const struct given_outs *g, int ci, long rows, long cols, struct plane_out *o, char *error,
                          size_t error_size) {
    const Py_ssize_t size = g->buffers[ci].len / (Py_ssize_t)sizeof(float);
    if (g->channels[ci] == 0) { /* nothing is written */
        o->base = (float *)g->buffers[ci].buf;
        o->plane_stride = o->row_stride = 0;
        o->channels = 0;
        return 1;
    }
    /* With every factor below 2^40 (the buffer) or 2^20 (block counts, channels) the sum cannot overflow. */
    const Py_ssize_t limit = (Py_ssize_t)1 << 40;
    int fits = rows >= 1 && cols >= 1 && rows <= (1L << 20) && cols <= (1L << 20) && size < limit &&
               g->offset[ci] < size && g->plane_stride[ci] < size && g->row_stride[ci] < size;
    if (fits) {
        Py_ssize_t last = g->offset[ci] + (g->channels[ci] - 1) * g->plane_stride[ci] +
                          ((Py_ssize_t)rows - 1) * g->row_stride[ci] + ((Py_ssize_t)cols - 1);
        fits = last < size;
    }
    if (!fits) {
        snprintf(error, error_size, "outs[%d]: a %ldx%ld block window does not fit its buffer", ci, rows, cols);
        return 0;
    }
    o->base = (float *)g->buffers[ci].buf + g->offset[ci];
    o->plane_stride = (size_t)g->plane_stride[ci];
    o->row_stride = (size_t)g->row_stride[ci];
    o->channels = (int)g->channels[ci];
    return 1;
}

/* out_fits_check with the GIL: raises ValueError when it does not fit. */
static int out_fits(const struct given_outs *g, int ci, long rows, long cols, struct plane_out *o) {
    char error[160];
    if (!out_fits_check(g, ci, rows, cols, o, error, sizeof error)) {
        PyErr_SetString(PyExc_ValueError, error);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------------
 * DLPack output (read_coefficients(..., dlpack=True)): each plane in a buffer of its own, handed to the caller
 * as a DLPack capsule ("dltensor", the unversioned C ABI of dlpack.h, declared here) that torch.from_dlpack
 * turns into a tensor owning the buffer without a copy. One call then makes each tensor, where a bytearray
 * takes NumPy and torch wrappers (on a CIFAR-sized file those cost as much as decoding it).
 * --------------------------------------------------------------------------------------------------- */

struct fq_dl_device {
    int32_t device_type; /* kDLCPU = 1 */
    int32_t device_id;
};
struct fq_dl_dtype {
    uint8_t code; /* kDLInt = 0, kDLFloat = 2 */
    uint8_t bits;
    uint16_t lanes;
};
struct fq_dl_tensor {
    void *data;
    struct fq_dl_device device;
    int32_t ndim;
    struct fq_dl_dtype dtype;
    int64_t *shape;
    int64_t *strides; /* in elements */
    uint64_t byte_offset;
};
struct fq_dl_managed {
    struct fq_dl_tensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct fq_dl_managed *self);
};
/* one allocation: the managed tensor, its shape and strides, then the data (64-byte aligned) */
struct fq_dl_block {
    struct fq_dl_managed managed;
    int64_t shape[3], strides[3];
    void *allocation;
};

static void fq_dl_delete(struct fq_dl_managed *self) { free(((struct fq_dl_block *)self)->allocation); }

/* The capsule's destructor: frees the tensor unless a consumer took it (and renamed the capsule). It may run while
 * an exception is set (read_direct's result failing after torch took some capsules): PyCapsule_IsValid sets and
 * clears no error, and GetPointer is called only on a valid capsule, so that exception stays. */
static void fq_dl_capsule_free(PyObject *capsule) {
    if (PyCapsule_IsValid(capsule, "dltensor")) {
        struct fq_dl_managed *m = PyCapsule_GetPointer(capsule, "dltensor");
        if (m != NULL && m->deleter != NULL) {
            m->deleter(m);
        }
    }
}

/* A new C-contiguous CPU tensor of ndim (1..3) dims, its data uninitialised: the capsule, and *data set to
 * its buffer; NULL with MemoryError. code/bits: the DLPack dtype (float32: 2/32, int32: 0/32). */
static PyObject *fq_dl_new(int ndim, const int64_t *shape, uint8_t code, uint8_t bits, void **data) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        count *= (size_t)shape[i];
    }
    const size_t head = (sizeof(struct fq_dl_block) + 63) / 64 * 64;
    void *allocation = malloc(head + (count > 0 ? count : 1) * (bits / 8) + 64);
    if (allocation == NULL) {
        return PyErr_NoMemory();
    }
    struct fq_dl_block *block = allocation;
    memset(block, 0, sizeof *block);
    block->allocation = allocation;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        block->shape[i] = shape[i];
        block->strides[i] = stride;
        stride *= shape[i];
    }
    struct fq_dl_tensor *t = &block->managed.dl_tensor;
    t->data = (char *)allocation + head;
    t->device.device_type = 1;
    t->ndim = ndim;
    t->dtype.code = code;
    t->dtype.bits = bits;
    t->dtype.lanes = 1;
    t->shape = block->shape;
    t->strides = block->strides;
    block->managed.deleter = fq_dl_delete;
    PyObject *capsule = PyCapsule_New(&block->managed, "dltensor", fq_dl_capsule_free);
    if (capsule == NULL) {
        free(allocation);
        return NULL;
    }
    *data = t->data;
    return capsule;
}

/* ---------------------------------------------------------------------------------------------------
 * The direct path: single-scan sequential Huffman-coded files (baseline or extended, 8-bit, 1 or 3 components,
 * every component in the one scan) decoded by the strict decoder above straight into the output planes,
 * without libjpeg: no decompress object, marker reader, memory manager or whole-image coefficient arrays.
 *
 * The header (SOI to the end of the first SOS segment) is parsed here once per header (direct_header: a
 * capsule Python keeps with its plan for files with those header bytes): quantisation steps, the derived
 * Huffman tables of the scan, the component layout, the restart interval. Per file, dj_decode decodes one MCU
 * row at a time into a small int16 row buffer per component and writes the rows the output needs, with the
 * same row writers as the libjpeg path (write_block_row, write_downsampled_row), so the planes are the same
 * floats. It takes only files it reads exactly as the libjpeg path does without a warning: anything else
 * (a header it does not know, any damage the decoder reports, a restart marker out of sequence, data that
 * ends early, a marker other than EOI after the scan, i.e. a second scan or tables between scans) makes it
 * give up ("not taken"), and the caller reads the file the usual way, which reports or recovers as before.
 *
 * With block windows, the libjpeg path stops reading the data after the iMCU row holding the windows' last
 * row (window_source): then only what precedes that point is checked. The direct path decodes those rows
 * and then goes on decoding (writing nothing) until it has read 16 bytes past the point the libjpeg path
 * stopped at, so every bit that path decoded, and every check it made, was decoded and made here too.
 * --------------------------------------------------------------------------------------------------- */

#define DJ_MAX_DIMENSION 65500 /* libjpeg's JPEG_MAX_DIMENSION: a larger frame is its error */
#define DJ_MAX_TABLES 8        /* DC and AC tables 0..3 */
#define DJ_CAPSULE "freqnets.jpeg._jpegc.direct_header"
#define DJ_BATCH_BYTES (96 << 10) /* int16 row buffers of about this size (in L2): see dj_decode */
#define DJ_STACK_BLOCKS 128       /* row buffers of at most this many blocks (16 KiB) live on dj_decode's stack */

struct dj_component {
    int h, v;                      /* sampling factors */
    long width_in_blocks, height_in_blocks;
    UINT16 quant[DCTSIZE2];        /* natural order */
    struct plane_steps steps[2];   /* the row writer's steps of quant, natural order (0) and zigzag order (1) */
};

struct dj_header {
    Py_ssize_t data_start;         /* the first byte of entropy-coded data */
    /* freqnets.jpeg.budget.check_read's figures for files with this header (see dj_within_budget) */
    unsigned long long first_scan_bits, blocks, work_allowance, work_per_byte;
    int n_components;              /* 1 or 3: the frame's and the scan's */
    unsigned restart_interval;     /* MCUs; 0: none */
    long mcus_x, mcus_y;           /* MCUs per row and MCU rows of the scan */
    int blocks_in_mcu;
    int block_comp[D_MAX_BLOCKS_IN_MCU]; /* per block of the MCU: frame component, */
    int block_slot[D_MAX_BLOCKS_IN_MCU]; /* its position in the scan (DC predictor), */
    int block_y[D_MAX_BLOCKS_IN_MCU], block_x[D_MAX_BLOCKS_IN_MCU]; /* its place in the MCU (block rows, columns) */
    int block_dc[D_MAX_BLOCKS_IN_MCU], block_ac[D_MAX_BLOCKS_IN_MCU]; /* its tables (indices into tables) */
    long rows_per_mcu[FQ_MAX_COMPONENTS], cols_per_row[FQ_MAX_COMPONENTS]; /* row buffer shape per component */
    long imcu_rows[FQ_MAX_COMPONENTS]; /* block rows of one of libjpeg's iMCU rows (v_samp_factor) */
    struct dj_component comp[FQ_MAX_COMPONENTS];
    int n_tables;
    struct fq_huff tables[]; /* n_tables of them: the scan's, indexed by block_dc and block_ac */
};

static unsigned dj_u16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

/* The frame as _markers.parse_header describes it (its Frame and Component fields, JpegHeader.coefficients):
 * what parse_direct hands to Python besides the capsule. */
struct dj_frame {
    int extended;                  /* SOF1 ("extended"), else SOF0 ("baseline") */
    unsigned width, height;        /* in pixels */
    int h_max, v_max;
    long mcus_x, mcus_y;           /* MCUs of an interleaved scan */
    int ids[FQ_MAX_COMPONENTS], tq[FQ_MAX_COMPONENTS];
    unsigned long long coefficients; /* of the MCU-padded planes (check_allocation's count) */
};

/* The Huffman table (class, id) of DHT segments, as libjpeg keeps it. */
struct dj_raw_table {
    int defined, n_symbols;
    JHUFF_TBL table;
};

/* Parse the header of the file d[0:n] (SOI to the end of its first SOS segment; hd->data_start: where that
 * ends); 1 when the direct path can read files with this header, else 0 ("declined"). Accepted headers are
 * ones Python's parse_header (freqnets/jpeg/_markers.py) accepts, with the same frame, block grids and
 * coefficient count: every check of parse_header that refuses a header the direct path could otherwise read
 * is made here too (max_pixels, check_allocation, the RGB colour guess of _check_colour); everything else
 * it refuses, this declines (any marker but DQT, DHT, DRI, APPn, COM, SOF0/SOF1 and SOS, any malformed or
 * truncated segment). A declined header goes to parse_header, which raises its typed error or returns the
 * header for the usual path. max_pixels < 0: no limit (as parse_header's None). */
static int dj_parse(const unsigned char *d, size_t n, long long max_pixels, struct dj_header *hd,
                    struct fq_huff tables[DJ_MAX_TABLES], struct dj_frame *fr) {
    struct dj_raw_table *raw = calloc(2 * 4, sizeof *raw); /* [class][id] */
    UINT16 quant[4][DCTSIZE2];
    int quant_defined[4] = {0}, frame = 0, ok = 0;
    int *ids = fr->ids, *tq = fr->tq;
    unsigned width = 0, height = 0;
    int jfif = 0, adobe = -1; /* an APP0 "JFIF" segment seen; the last Adobe APP14 segment's transform (-1: none) */
    if (raw == NULL) {
        return 0;
    }
    memset(hd, 0, sizeof *hd);
    memset(fr, 0, sizeof *fr);
    if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) {
        goto done;
    }
    size_t pos = 2;
    for (;;) {
        if (pos >= n || d[pos] != 0xFF) {
            goto done;
        }
        while (pos < n && d[pos] == 0xFF) {
            pos++;
        }
        if (pos + 3 > n) {
            goto done;
        }
        const int marker = d[pos++];
        const size_t length = dj_u16(d + pos);
        if (length < 2 || length > n - pos) {
            goto done;
        }
        const unsigned char *p = d + pos + 2;
        const size_t len = length - 2;
        pos += length;
        if (marker == 0xDB) { /* DQT */
            for (size_t i = 0; i < len;) {
                const int pq = p[i] >> 4, id = p[i] & 15;
                const size_t size = 1 + (size_t)DCTSIZE2 * (pq + 1);
                if (pq > 1 || id > 3 || size > len - i) {
                    goto done;
                }
                for (int k = 0; k < DCTSIZE2; k++) {
                    quant[id][zigzag_to_natural[k]] =
                        (UINT16)(pq ? dj_u16(p + i + 1 + 2 * k) : p[i + 1 + k]);
                }
                quant_defined[id] = 1;
                i += size;
            }
        } else if (marker == 0xC4) { /* DHT */
            for (size_t i = 0; i < len;) {
                if (len - i < 17) {
                    goto done;
                }
                const int tc = p[i] >> 4, th = p[i] & 15;
                int total = 0;
                for (int l = 1; l <= 16; l++) {
                    total += p[i + l];
                }
                if (tc > 1 || th > 3 || total > 256 || (size_t)total > len - i - 17) {
                    goto done;
                }
                struct dj_raw_table *t = &raw[tc * 4 + th];
                memset(&t->table, 0, sizeof t->table);
                for (int l = 1; l <= 16; l++) {
                    t->table.bits[l] = p[i + l];
                }
                memcpy(t->table.huffval, p + i + 17, (size_t)total);
                t->defined = 1;
                t->n_symbols = total;
                i += 17 + (size_t)total;
            }
        } else if (marker == 0xDD) { /* DRI */
            if (len != 2) {
                goto done;
            }
            hd->restart_interval = dj_u16(p);
        } else if ((marker >= 0xE0 && marker <= 0xEF) || marker == 0xFE) { /* APPn, COM */
            /* what parse_header reads of them for its colour check (read_segment) */
            if (marker == 0xE0 && len >= 5 && memcmp(p, "JFIF", 5) == 0) {
                jfif = 1;
            } else if (marker == 0xEE && len >= 12 && memcmp(p, "Adobe", 5) == 0) {
                adobe = p[11];
            }
            continue;
        } else if (marker == 0xC0 || marker == 0xC1) { /* SOF0, SOF1: Huffman-coded sequential */
            if (frame || len < 6 || p[0] != 8) {
                goto done;
            }
            height = dj_u16(p + 1);
            width = dj_u16(p + 3);
            hd->n_components = p[5];
            if (width < 1 || height < 1 || width > DJ_MAX_DIMENSION || height > DJ_MAX_DIMENSION ||
                (hd->n_components != 1 && hd->n_components != 3) || len != 6 + 3 * (size_t)hd->n_components) {
                goto done;
            }
            int h_max = 1, v_max = 1;
            for (int c = 0; c < hd->n_components; c++) {
                ids[c] = p[6 + 3 * c];
                hd->comp[c].h = p[7 + 3 * c] >> 4;
                hd->comp[c].v = p[7 + 3 * c] & 15;
                tq[c] = p[8 + 3 * c];
                if (hd->comp[c].h < 1 || hd->comp[c].h > 4 || hd->comp[c].v < 1 || hd->comp[c].v > 4 || tq[c] > 3) {
                    goto done;
                }
                for (int o = 0; o < c; o++) {
                    if (ids[o] == ids[c]) {
                        goto done;
                    }
                }
                h_max = hd->comp[c].h > h_max ? hd->comp[c].h : h_max;
                v_max = hd->comp[c].v > v_max ? hd->comp[c].v : v_max;
            }
            for (int c = 0; c < hd->n_components; c++) {
                struct dj_component *comp = &hd->comp[c];
                comp->width_in_blocks = ((long)width * comp->h + 8L * h_max - 1) / (8L * h_max);
                comp->height_in_blocks = ((long)height * comp->v + 8L * v_max - 1) / (8L * v_max);
            }
            hd->mcus_x = ((long)width + 8L * h_max - 1) / (8L * h_max);
            hd->mcus_y = ((long)height + 8L * v_max - 1) / (8L * v_max);
            /* parse_header's limits (_parse_sof's max_pixels, check_allocation's coefficients): it raises
             * JpegTooLargeError for these frames (width, height < 2^16: no product below overflows) */
            const unsigned long long pixels = (unsigned long long)width * height;
            /* a pixel limit above 2^40 (no frame holds that many pixels) as 2^40: 6 * max_pixels cannot wrap */
            const unsigned long long limit = max_pixels > (1LL << 40) ? 1ULL << 40 : (unsigned long long)max_pixels;
            unsigned long long per_mcu = 0;
            for (int c = 0; c < hd->n_components; c++) {
                per_mcu += (unsigned long long)(hd->comp[c].h * hd->comp[c].v) * DCTSIZE2;
            }
            fr->coefficients = (unsigned long long)hd->mcus_x * (unsigned long long)hd->mcus_y * per_mcu;
            if ((max_pixels >= 0 && pixels > (unsigned long long)max_pixels) ||
                fr->coefficients > 6 * pixels + (1ULL << 22) ||
                (max_pixels >= 0 && fr->coefficients > 6 * limit + (1ULL << 22))) {
                goto done;
            }
            fr->extended = marker == 0xC1;
            fr->width = width;
            fr->height = height;
            fr->h_max = h_max;
            fr->v_max = v_max;
            fr->mcus_x = hd->mcus_x;
            fr->mcus_y = hd->mcus_y;
            frame = 1;
        } else if (marker == 0xDA) { /* SOS: the last segment of the header */
            const int ns = len >= 1 ? p[0] : 0;
            if (!frame || ns != hd->n_components || len != 4 + 2 * (size_t)ns || p[1 + 2 * ns] != 0 ||
                p[2 + 2 * ns] != DCTSIZE2 - 1 || p[3 + 2 * ns] != 0) {
                goto done;
            }
            /* _check_colour: a 3-component file without a JFIF marker is RGB when an Adobe marker says transform
             * 0, or, without one, when its component ids are 'R', 'G', 'B' (parse_header refuses it) */
            if (ns == 3 && !jfif &&
                (adobe == 0 || (adobe < 0 && ids[0] == 'R' && ids[1] == 'G' && ids[2] == 'B'))) {
                goto done;
            }
            int used[FQ_MAX_COMPONENTS] = {0}, n_tables = 0, index[2][4];
            memset(index, -1, sizeof index);
            int blk = 0;
            for (int s = 0; s < ns; s++) {
                int c = 0;
                while (c < hd->n_components && ids[c] != p[1 + 2 * s]) {
                    c++;
                }
                if (c == hd->n_components || used[c] || !quant_defined[tq[c]]) {
                    goto done;
                }
                used[c] = 1;
                memcpy(hd->comp[c].quant, quant[tq[c]], sizeof hd->comp[c].quant);
                /* once per header, not per file (a tenth of read_direct's own time on a CIFAR-sized file) */
                plane_steps_init(&hd->comp[c].steps[0], hd->comp[c].quant, 0);
                plane_steps_init(&hd->comp[c].steps[1], hd->comp[c].quant, 1);
                const int ids_of[2] = {p[2 + 2 * s] >> 4, p[2 + 2 * s] & 15};
                int table_of[2];
                for (int tc = 0; tc < 2; tc++) {
                    const int th = ids_of[tc];
                    if (th > 3 || !raw[tc * 4 + th].defined) {
                        goto done;
                    }
                    if (index[tc][th] < 0) {
                        const struct dj_raw_table *t = &raw[tc * 4 + th];
                        if (!fq_table_valid(&t->table, tc, t->n_symbols)) {
                            goto done; /* libjpeg's JERR_BAD_HUFF_TABLE: the usual path raises it */
                        }
                        fq_build(&t->table, tc, &tables[n_tables]);
                        index[tc][th] = n_tables++;
                    }
                    table_of[tc] = index[tc][th];
                }
                /* an interleaved scan's MCU: h x v blocks of each component; a single component: one block */
                const int bh = ns == 1 ? 1 : hd->comp[c].h, bv = ns == 1 ? 1 : hd->comp[c].v;
                if (blk + bh * bv > D_MAX_BLOCKS_IN_MCU) {
                    goto done;
                }
                for (int y = 0; y < bv; y++) {
                    for (int x = 0; x < bh; x++, blk++) {
                        hd->block_comp[blk] = c;
                        hd->block_slot[blk] = s;
                        hd->block_y[blk] = y;
                        hd->block_x[blk] = x;
                        hd->block_dc[blk] = table_of[0];
                        hd->block_ac[blk] = table_of[1];
                    }
                }
                hd->rows_per_mcu[c] = bv;
                hd->cols_per_row[c] = ns == 1 ? hd->comp[c].width_in_blocks : hd->mcus_x * bh;
                hd->imcu_rows[c] = hd->comp[c].v;
            }
            hd->blocks_in_mcu = blk;
            hd->n_tables = n_tables;
            if (ns == 1) { /* non-interleaved: the component's own block grid */
                hd->mcus_x = hd->comp[0].width_in_blocks;
                hd->mcus_y = hd->comp[0].height_in_blocks;
            }
            hd->data_start = (Py_ssize_t)pos;
            ok = 1;
            goto done;
        } else { /* another SOF (progressive, arithmetic, lossless, ...), DAC, DNL, EXP, JPGn, RSTn, EOI, ... */
            goto done;
        }
    }
done:
    free(raw);
    return ok;
}

/* Where each frame component's window goes and how: its window (first row, first column, rows, columns of its
 * block grid), its output and, for downsampled components, the averaging map. */
struct dj_target {
    long windows[FQ_MAX_COMPONENTS][4];
    struct plane_out outs[FQ_MAX_COMPONENTS];
    int down[FQ_MAX_COMPONENTS];
    int stop_early; /* windows given: stop as the libjpeg path's window_source does */
};

/* A plane's output block grid for its window (downsampled by dh x dv for components 1..). */
static void dj_out_dims(const long *window, int down, int dh, int dv, long *rows, long *cols) {
    *rows = down ? (window[2] + dv - 1) / dv : window[2];
    *cols = down ? (window[3] + dh - 1) / dh : window[3];
}

/* 1 when the windows lie in the components' block grids (as the libjpeg path checks). */
static int dj_windows_fit(const struct dj_header *hd, const long windows[][4]) {
    for (int c = 0; c < hd->n_components; c++) {
        const long *wd = windows[c];
        const long height = hd->comp[c].height_in_blocks, width = hd->comp[c].width_in_blocks;
        if (wd[0] < 0 || wd[1] < 0 || wd[2] < 1 || wd[3] < 1 || wd[0] > height || wd[1] > width ||
            wd[2] > height - wd[0] || wd[3] > width - wd[1]) {
            return 0;
        }
    }
    return 1;
}

/* budget.check_read's limits that depend on the file, as read_dct's fast path and run_planned check them: 1 when
 * the data can hold the first scan and (scans x blocks) is within the work the file's size allows. */
/* 1 when (scans x blocks) is within the work the file's size allows (budget.check_read): first with as many
 * scans as data[start:size] could hold SOS markers (two bytes each), then with its SOS markers counted.
 * Compared as scans <= allowed / blocks, so nothing overflows. */
static int scans_within_work(const unsigned char *data, size_t size, size_t start, unsigned long long blocks,
                             unsigned long long work_allowance, unsigned long long work_per_byte) {
    if (blocks == 0) {
        return 1;
    }
    const unsigned long long allowed = work_allowance + work_per_byte * (unsigned long long)size;
    if (1 + (unsigned long long)(size - start) / 2 <= allowed / blocks) {
        return 1;
    }
    unsigned long long scans = 1;
    for (const unsigned char *q = data + start, *end = data + size; q + 1 < end; q++) {
        q = memchr(q, 0xFF, (size_t)(end - q - 1));
        if (q == NULL) {
            break;
        }
        scans += q[1] == 0xDA;
    }
    return scans <= allowed / blocks;
}

static int dj_within_budget(const struct dj_header *hd, const unsigned char *data, size_t size) {
    if (size < (size_t)hd->data_start || 8ULL * (unsigned long long)(size - (size_t)hd->data_start) < hd->first_scan_bits) {
        return 0;
    }
    return scans_within_work(data, size, (size_t)hd->data_start, hd->blocks, hd->work_allowance, hd->work_per_byte);
}

/* fq_end_segment taking and returning the bit reader by value: the decoding loop keeps it in registers. */
static struct fq_bitbuf __attribute__((noinline)) dj_end_segment(struct fq_entropy *e, struct fq_bitbuf b) {
    fq_end_segment(NULL, e, &b);
    return b;
}

/* Decode data[0:size] (a file with header hd) into t's outputs, without the GIL. 1: done, every output
 * written; 0: not taken (the caller reads the file the usual way; outputs may be partly written); -1: out of
 * memory. zigzag, dh, dv, kernel: as read_coefficients' (downsampling applies to t->down components). */
static int dj_decode(const struct dj_header *hd, const unsigned char *data, size_t size, const struct dj_target *t,
                     int zigzag, int dh, int dv, const float *kernel) {
    if ((size_t)hd->data_start > size) {
        return 0;
    }
    const int n = hd->n_components;
    /* row buffers: per component its block rows of `batch` MCU rows, after one carried row when pairs of block
     * rows are averaged (the pair may straddle two batches). The planes are written a batch at a time, one
     * component after the other: longer runs of each channel's rows, fewer output streams at once. */
    size_t offset[FQ_MAX_COMPONENTS], total = 0, per_mcu_row = 0;
    int carry[FQ_MAX_COMPONENTS];
    for (int c = 0; c < n; c++) {
        per_mcu_row += (size_t)hd->rows_per_mcu[c] * (size_t)hd->cols_per_row[c];
    }
    long batch = (long)(DJ_BATCH_BYTES / (per_mcu_row * sizeof(JBLOCK)));
    batch = batch < 1 ? 1 : (batch > hd->mcus_y ? hd->mcus_y : batch);
    for (int c = 0; c < n; c++) {
        carry[c] = t->down[c] && dv == 2;
        offset[c] = total;
        total += (size_t)(batch * hd->rows_per_mcu[c] + carry[c]) * (size_t)hd->cols_per_row[c];
    }
    /* Small files (a CIFAR image's rows are 24 blocks) use the stack: no allocation per file. The averaging maps
     * are allocated only when some component is downsampled; the plain steps come with the header. */
    JBLOCK stack_rows[DJ_STACK_BLOCKS];
    int any_down = 0;
    for (int c = 0; c < n; c++) {
        any_down |= t->down[c];
    }
    JBLOCK *buffer = total <= DJ_STACK_BLOCKS ? stack_rows : malloc(total * sizeof(JBLOCK));
    struct down_map *maps = any_down ? malloc(sizeof(struct down_map) * FQ_MAX_COMPONENTS) : NULL;
    if (buffer == NULL || (any_down && maps == NULL)) {
        if (buffer != stack_rows) {
            free(buffer);
        }
        free(maps);
        return -1;
    }
    const struct plane_steps *steps[FQ_MAX_COMPONENTS];
    long next_out[FQ_MAX_COMPONENTS] = {0}; /* downsampled components: the next output row to write */
    long stop_row = hd->mcus_y - 1;         /* the last MCU row whose blocks are written */
    for (int c = 0; c < n; c++) {
        steps[c] = &hd->comp[c].steps[zigzag ? 1 : 0];
        if (t->down[c]) {
            down_map_init(&maps[c], hd->comp[c].quant, zigzag, dh, dv, kernel);
        }
    }
    if (t->stop_early) {
        /* libjpeg's last iMCU row (v_samp_factor block rows each, in the interleaved and the single-component
         * scan alike) holding a window row; in MCU rows of this scan */
        long last = 0;
        for (int c = 0; c < n; c++) {
            const long imcu = (t->windows[c][0] + t->windows[c][2] - 1) / hd->imcu_rows[c];
            const long rows = n == 1 ? (imcu + 1) * hd->imcu_rows[c] - 1 : imcu;
            last = rows > last ? rows : last;
        }
        stop_row = last < stop_row ? last : stop_row;
    }
    struct fq_entropy e;
    memset(&e, 0, sizeof e);
    for (int blk = 0; blk < hd->blocks_in_mcu; blk++) {
        e.dc[blk] = &hd->tables[hd->block_dc[blk]];
        e.ac[blk] = &hd->tables[hd->block_ac[blk]];
        e.slot[blk] = hd->block_slot[blk];
    }
    struct fq_bitbuf b = {0, data + hd->data_start, size - (size_t)hd->data_start, 0, 0, 0};
    unsigned restarts_to_go = hd->restart_interval, next_restart = 0;
    size_t read_until = 0; /* after stop_row: decode until this many bytes are read (0: not yet known) */
    int ok = 0, scan_done = 0;
    long first = 0; /* the batch's first MCU row */
    for (long my = 0; my < hd->mcus_y && !scan_done; my++) {
        const long slot = my - first; /* this MCU row's place in the batch */
        for (int c = 0; c < n; c++) { /* the row's blocks zeroed at once (the decoder writes only nonzero values) */
            const size_t width = (size_t)hd->cols_per_row[c];
            memset(buffer + offset[c] + (size_t)(carry[c] + slot * hd->rows_per_mcu[c]) * width, 0,
                   (size_t)hd->rows_per_mcu[c] * width * sizeof(JBLOCK));
        }
        for (long mx = 0; mx < hd->mcus_x; mx++) {
            if (hd->restart_interval) {
                if (restarts_to_go == 0) {
                    b = dj_end_segment(&e, b);
                    if (e.damaged || b.marker != JPEG_RST0 + (int)next_restart) {
                        goto done;
                    }
                    b.marker = 0;
                    next_restart = (next_restart + 1) & 7;
                    memset(e.pred, 0, sizeof e.pred);
                    restarts_to_go = hd->restart_interval;
                }
                restarts_to_go--;
            }
            for (int blk = 0; blk < hd->blocks_in_mcu; blk++) {
                const int c = hd->block_comp[blk];
                JBLOCK *block = buffer + offset[c] +
                                (size_t)(carry[c] + slot * hd->rows_per_mcu[c] + hd->block_y[blk]) *
                                    (size_t)hd->cols_per_row[c] +
                                (size_t)(mx * (n == 1 ? 1 : hd->comp[c].h) + hd->block_x[blk]);
                if (!fq_sequential_block(NULL, &e, &b, blk, *block)) {
                    goto done;
                }
            }
            if (b.nbits < b.zeros) { /* the MCU needed bits past a marker or the end of the data */
                goto done;
            }
            if (my > stop_row && size - b.left >= read_until) {
                scan_done = 2; /* read past the point where the libjpeg path stops: stop too */
                break;
            }
        }
        if (my > stop_row) {
            first = my + 1; /* read on without writing: one MCU row's buffer is enough */
            continue;
        }
        if (scan_done || (slot + 1 < batch && my < stop_row)) {
            continue;
        }
        for (int c = 0; c < n; c++) { /* the batch's rows: block rows r_first .. r_end - 1 */
            const struct plane_out *o = &t->outs[c];
            const long *wd = t->windows[c];
            const long r_first = first * hd->rows_per_mcu[c], r_end = (my + 1) * hd->rows_per_mcu[c];
            const JBLOCK *rows = buffer + offset[c]; /* row r_first - carry[c] .. */
            const size_t width = (size_t)hd->cols_per_row[c];
            if (o->channels == 0) {
                continue;
            }
            if (!t->down[c]) {
                for (long r = r_first > wd[0] ? r_first : wd[0]; r < r_end && r < wd[0] + wd[2]; r++) {
                    write_block_row(rows + (size_t)(r - r_first) * width + (size_t)wd[1], (size_t)wd[3], o,
                                    (size_t)(r - wd[0]), steps[c]);
                }
                continue;
            }
            const long out_rows = (wd[2] + dv - 1) / dv;
            while (next_out[c] < out_rows) {
                const long top = wd[0] + next_out[c] * dv;
                const long bottom = (dv == 2 && next_out[c] * 2 + 1 < wd[2]) ? top + 1 : top;
                if (bottom >= r_end) {
                    break;
                }
                /* rows before this MCU row: only the carried one (top >= r_first - 1 for a pair's first row) */
                if (top < r_first - carry[c]) {
                    goto done;
                }
                const JBLOCK *base = rows + (size_t)carry[c] * width;
                write_downsampled_row(base + (top - r_first) * (long)width, base + (bottom - r_first) * (long)width,
                                      wd[1], wd[3], o, (size_t)next_out[c], &maps[c]);
                next_out[c]++;
            }
            if (carry[c]) { /* the batch's last block row may start the next pair */
                memcpy(buffer + offset[c], buffer + offset[c] + (size_t)(r_end - r_first) * width,
                       width * sizeof(JBLOCK));
            }
        }
        first = my + 1;
        if (my == stop_row) {
            read_until = size - b.left + 16;
        }
    }
    if (scan_done != 2) {
        /* the scan's end: its data used up to the final partial byte, then EOI (anything else, a second
         * scan or tables before it included, is for the usual path) */
        b = dj_end_segment(&e, b);
        if (e.damaged || b.marker != JPEG_EOI) {
            goto done;
        }
    }
    for (int c = 0; c < n; c++) { /* every output row written (the window and the stop rule say so) */
        if (t->down[c] && t->outs[c].channels != 0 && next_out[c] != (t->windows[c][2] + dv - 1) / dv) {
            goto done;
        }
    }
    ok = 1;
done:
    if (buffer != stack_rows) {
        free(buffer);
    }
    free(maps);
    return ok;
}

static void dj_capsule_free(PyObject *capsule) {
    free(PyCapsule_GetPointer(capsule, DJ_CAPSULE));
}

/* The direct path's parse of the header of the file d[0:n] (dj_parse) in a new block of its own, holding only
 * the Huffman tables the scan uses (one block per distinct header stays with the read plans). NULL with
 * *declined set when dj_parse declines the header, NULL with an exception when out of memory. */
static struct dj_header *dj_new_header(const unsigned char *d, size_t n, long long max_pixels, struct dj_frame *fr,
                                       int *declined) {
    struct dj_header parsed;
    struct fq_huff *tables = malloc(DJ_MAX_TABLES * sizeof *tables);
    if (tables == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    *declined = !dj_parse(d, n, max_pixels, &parsed, tables, fr);
    if (*declined) {
        free(tables);
        return NULL;
    }
    struct dj_header *hd = malloc(sizeof *hd + (size_t)parsed.n_tables * sizeof *tables);
    if (hd == NULL) {
        free(tables);
        PyErr_NoMemory();
        return NULL;
    }
    *hd = parsed;
    memcpy(hd->tables, tables, (size_t)parsed.n_tables * sizeof *tables);
    free(tables);
    return hd;
}

PyDoc_STRVAR(direct_header_doc,
             "direct_header(prefix, dims, first_scan_bits, blocks, work_allowance, work_per_byte) -> capsule or None\n\n"
             "prefix: a file's bytes from SOI to the end of its first SOS segment (exactly); dims: the (rows, columns)\n"
             "block grid of each component, from the caller's own parse. The capsule (for read_direct and\n"
             "read_planned's plans) holds what the direct path needs to read files starting with these bytes; None\n"
             "when it does not read them (not single-scan sequential Huffman-coded with 1 or 3 components, or a\n"
             "grid that differs from dims). The other arguments: budget.check_read's figures (bits the first scan\n"
             "needs at least, blocks of one scan, the libjpeg backend's work allowance and work per byte), which\n"
             "read_direct checks per file.");

static PyObject *direct_header(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer prefix;
    PyObject *dims_arg;
    unsigned long long budget[4];
    if (!PyArg_ParseTuple(args, "y*OKKKK", &prefix, &dims_arg, &budget[0], &budget[1], &budget[2], &budget[3])) {
        return NULL;
    }
    int declined = 0;
    struct dj_frame frame;
    struct dj_header *hd = dj_new_header(prefix.buf, (size_t)prefix.len, -1, &frame, &declined);
    const Py_ssize_t length = prefix.len;
    PyBuffer_Release(&prefix);
    if (hd == NULL) {
        if (declined) {
            Py_RETURN_NONE;
        }
        return NULL;
    }
    hd->first_scan_bits = budget[0];
    hd->blocks = budget[1];
    hd->work_allowance = budget[2];
    hd->work_per_byte = budget[3];
    int ok = hd->data_start == length; /* the prefix is the header, exactly */
    PyObject *dims = ok ? PySequence_Tuple(dims_arg) : NULL;
    if (ok && dims == NULL) {
        free(hd);
        return NULL;
    }
    ok = ok && PyTuple_GET_SIZE(dims) == hd->n_components;
    for (int c = 0; ok && c < hd->n_components; c++) {
        long rows, cols;
        PyObject *item = PySequence_Tuple(PyTuple_GET_ITEM(dims, c));
        ok = item != NULL && PyArg_ParseTuple(item, "ll", &rows, &cols);
        Py_XDECREF(item);
        if (!ok) {
            Py_DECREF(dims);
            free(hd);
            return NULL;
        }
        ok = rows == hd->comp[c].height_in_blocks && cols == hd->comp[c].width_in_blocks;
    }
    Py_XDECREF(dims);
    if (!ok) {
        free(hd);
        Py_RETURN_NONE;
    }
    PyObject *capsule = PyCapsule_New(hd, DJ_CAPSULE, dj_capsule_free);
    if (capsule == NULL) {
        free(hd);
    }
    return capsule;
}

PyDoc_STRVAR(parse_direct_doc,
             "parse_direct(data, max_pixels, work_allowance, work_per_byte)\n"
             "    -> (capsule, data_start, coefficients, first_scan_bits, sampling_factors, grids, frame) or None\n\n"
             "The header of the file data (bytes), parsed in C for the direct path: None (declined) unless the file is\n"
             "one read_direct reads (single-scan sequential Huffman-coded, 8-bit, 1 or 3 components) and\n"
             "_markers.parse_header(data, max_pixels) accepts its header (max_pixels: None or an int, as there); then\n"
             "the capsule (as direct_header's, for read_direct and read_planned) and the figures a read plan needs,\n"
             "equal to parse_header's: where the scan data starts, the coefficients of the MCU-padded planes\n"
             "(JpegHeader.coefficients), budget.scan_data_short's bits the first scan needs, the ((h, v), ...)\n"
             "sampling factors, the (rows, columns) block grid of each component and the fields of its Frame, the\n"
             "components as the fields of each Component (_markers.frame_of(frame) is parse_header's frame). A\n"
             "declined file is parsed by parse_header, which raises its typed error or returns the header for the\n"
             "usual path.\n"
             "work_allowance, work_per_byte: the libjpeg backend's figures of budget.check_read (read_direct\n"
             "checks them per file).");

static PyObject *parse_direct(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_direct(data: bytes, max_pixels, work_allowance, work_per_byte)");
        return NULL;
    }
    long long max_pixels = -1; /* None: no limit */
    if (args[1] != Py_None) {
        int overflow = 0;
        max_pixels = PyLong_AsLongLongAndOverflow(args[1], &overflow);
        if (max_pixels == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow > 0) {
            max_pixels = -1; /* more pixels than any frame has (65535^2): no limit */
        } else if (overflow < 0 || max_pixels < 0) {
            PyErr_SetString(PyExc_ValueError, "parse_direct: max_pixels must be None or >= 0");
            return NULL;
        }
    }
    const unsigned long long allowance = PyLong_AsUnsignedLongLong(args[2]);
    const unsigned long long per_byte = allowance == (unsigned long long)-1 && PyErr_Occurred()
                                            ? 0
                                            : PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    int declined = 0;
    struct dj_frame fr;
    struct dj_header *hd = dj_new_header((const unsigned char *)PyBytes_AS_STRING(args[0]),
                                         (size_t)PyBytes_GET_SIZE(args[0]), max_pixels, &fr, &declined);
    if (hd == NULL) {
        if (declined) {
            Py_RETURN_NONE;
        }
        return NULL;
    }
    /* budget.check_read's figures: blocks of one scan (the MCU-padded planes'), and scan_data_short's bits of a
     * sequential first scan holding every component (a DC and an AC code per block of the components' grids) */
    unsigned long long grid_blocks = 0;
    for (int c = 0; c < hd->n_components; c++) {
        grid_blocks += (unsigned long long)hd->comp[c].height_in_blocks * (unsigned long long)hd->comp[c].width_in_blocks;
    }
    hd->first_scan_bits = 2 * grid_blocks;
    hd->blocks = fr.coefficients / DCTSIZE2;
    hd->work_allowance = allowance;
    hd->work_per_byte = per_byte;
    PyObject *capsule = PyCapsule_New(hd, DJ_CAPSULE, dj_capsule_free);
    if (capsule == NULL) {
        free(hd);
        return NULL;
    }
    const int n = hd->n_components;
    PyObject *factors = PyTuple_New(n), *grids = PyTuple_New(n), *components = PyTuple_New(n);
    for (int c = 0; factors != NULL && grids != NULL && components != NULL && c < n; c++) {
        const struct dj_component *comp = &hd->comp[c];
        PyObject *f = Py_BuildValue("(ii)", comp->h, comp->v);
        PyObject *g = Py_BuildValue("(ll)", comp->height_in_blocks, comp->width_in_blocks);
        PyObject *k = Py_BuildValue("(iiiill)", fr.ids[c], comp->h, comp->v, fr.tq[c], comp->width_in_blocks,
                                    comp->height_in_blocks);
        if (f == NULL || g == NULL || k == NULL) {
            Py_XDECREF(f);
            Py_XDECREF(g);
            Py_XDECREF(k);
            Py_CLEAR(factors);
            break;
        }
        PyTuple_SET_ITEM(factors, c, f);
        PyTuple_SET_ITEM(grids, c, g);
        PyTuple_SET_ITEM(components, c, k);
    }
    PyObject *result = NULL;
    if (factors != NULL && grids != NULL && components != NULL) {
        result = Py_BuildValue("(NnKKOO(siIIOiill))", capsule, hd->data_start, fr.coefficients, hd->first_scan_bits,
                               factors, grids, fr.extended ? "extended" : "baseline", 8, fr.height, fr.width, components,
                               fr.h_max, fr.v_max, fr.mcus_x, fr.mcus_y);
        capsule = NULL; /* stolen by "N", also when Py_BuildValue fails */
    }
    Py_XDECREF(capsule);
    Py_XDECREF(factors);
    Py_XDECREF(grids);
    Py_XDECREF(components);
    return result;
}

/* windows (None or per component (first row, first column, rows, columns)) and downsample (None or (dh, dv,
 * kernel)) parsed as read_coefficients parses them; 0 with an exception. */
static int dj_parse_windows(PyObject *arg, int n, long windows[][4], int *given) {
    *given = arg != Py_None;
    if (arg == Py_None) {
        return 1;
    }
    PyObject *seq = PySequence_Tuple(arg);
    if (seq == NULL) {
        return 0;
    }
    int ok = PyTuple_GET_SIZE(seq) == n;
    for (int i = 0; ok && i < n; i++) {
        PyObject *item = PySequence_Tuple(PyTuple_GET_ITEM(seq, i));
        ok = item != NULL &&
             PyArg_ParseTuple(item, "llll", &windows[i][0], &windows[i][1], &windows[i][2], &windows[i][3]);
        Py_XDECREF(item);
        if (!ok) {
            Py_DECREF(seq);
            return 0;
        }
    }
    Py_DECREF(seq);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "windows: one (first row, first column, rows, columns) per component");
    }
    return ok;
}

static int dj_parse_down(PyObject *arg, int *dh, int *dv, float *kernel) {
    *dh = *dv = 1;
    if (arg == Py_None) {
        return 1;
    }
    Py_buffer kbuf;
    PyObject *down = PySequence_Tuple(arg);
    if (down == NULL || !PyArg_ParseTuple(down, "iiy*", dh, dv, &kbuf)) {
        Py_XDECREF(down);
        return 0;
    }
    Py_DECREF(down);
    int ok = (*dh == 1 || *dh == 2) && (*dv == 1 || *dv == 2) && kbuf.len == 8 * 16 * (Py_ssize_t)sizeof(float);
    if (ok) {
        memcpy(kernel, kbuf.buf, 8 * 16 * sizeof(float));
    }
    PyBuffer_Release(&kbuf);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "downsample must be (dh, dv, kernel) with dh, dv in {1, 2} and "
                                          "kernel 512 bytes of float32 (8, 16)");
    }
    return ok;
}

/* The result object of read_direct(..., fields, (cls, convert)): as reader._result builds it in Python, without
 * the interpreter (its bytecode was a sixth of a CIFAR-sized read_dct). values = a copy of fields with
 * "y", "cb", "cr" (three components) and "quant_tables" set to convert(capsule); cls.__new__(cls) gets values as
 * its __dict__ (object.__setattr__, past a frozen dataclass's __setattr__), then its __post_init__() runs.
 * capsules: read_direct's tuple (n planes, then the tables). NULL with an exception. */
static PyObject *dj_names[4], *dj_dict_name, *dj_post_init_name; /* interned when the module loads */

static PyObject *dj_result(PyObject *capsules, int n, PyObject *fields, PyObject *spec) {
    if (!PyDict_Check(fields) || !PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2 ||
        !PyType_Check(PyTuple_GET_ITEM(spec, 0))) {
        PyErr_SetString(PyExc_TypeError, "read_direct: fields must be a dict and result (class, convert)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)PyTuple_GET_ITEM(spec, 0);
    PyObject *convert = PyTuple_GET_ITEM(spec, 1);
    PyObject *values = PyDict_Copy(fields);
    if (values == NULL) {
        return NULL;
    }
    for (int i = 0; i <= n; i++) {
        PyObject *tensor = PyObject_CallOneArg(convert, PyTuple_GET_ITEM(capsules, i));
        if (tensor == NULL || PyDict_SetItem(values, dj_names[i == n ? 3 : i], tensor) < 0) {
            Py_XDECREF(tensor);
            Py_DECREF(values);
            return NULL;
        }
        Py_DECREF(tensor);
    }
    PyObject *none = PyTuple_New(0);
    PyObject *result = none != NULL ? PyBaseObject_Type.tp_new(cls, none, NULL) : NULL; /* object.__new__(cls) */
    Py_XDECREF(none);
    if (result == NULL || PyObject_GenericSetAttr(result, dj_dict_name, values) < 0) {
        Py_XDECREF(result);
        Py_DECREF(values);
        return NULL;
    }
    Py_DECREF(values);
    PyObject *checked = PyObject_CallMethodNoArgs(result, dj_post_init_name);
    if (checked == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    Py_DECREF(checked);
    return result;
}

PyDoc_STRVAR(read_direct_doc,
             "read_direct(data, header, zigzag, windows=None, downsample=None, fields=None, result=None)\n"
             "    -> (plane, ..., quant_tables), a result object, or None\n\n"
             "The direct path (no libjpeg): data (bytes) starts with the header bytes `header` (a direct_header\n"
             "capsule) was made from. windows, downsample, zigzag: as read_coefficients'. Checks the file's budget\n"
             "limits first (None when over them: the usual path refuses or reads it). Returns DLPack capsules:\n"
             "per component a float32 (64, rows, columns) plane, then the int32 (n_components, 64) quantisation\n"
             "tables (natural order); None when the file is not one this path reads exactly as the libjpeg path\n"
             "reads it without a warning (damage, a second scan, ...): then read it with read_coefficients.\n"
             "With fields (a dict) and result (cls, convert): instead of the capsules, the object reader._result\n"
             "builds: cls.__new__(cls) with a copy of fields, y, cb, cr (3 components) and quant_tables set to\n"
             "convert(capsule), as its __dict__, after which its __post_init__() runs.");

static PyObject *read_direct(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs < 3 || nargs > 7 || nargs == 6) {
        PyErr_SetString(PyExc_TypeError,
                        "read_direct(data, header, zigzag, windows=None, downsample=None, fields=None, result=None)");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "read_direct: data must be bytes");
        return NULL;
    }
    const struct dj_header *hd = PyCapsule_GetPointer(args[1], DJ_CAPSULE);
    const int zigzag = PyObject_IsTrue(args[2]);
    if (hd == NULL || zigzag < 0) {
        return NULL;
    }
    const int n = hd->n_components;
    struct dj_target t;
    int dh = 1, dv = 1;
    float kernel[8 * 16];
    memset(&t, 0, sizeof t);
    if (!dj_parse_windows(nargs > 3 ? args[3] : Py_None, n, t.windows, &t.stop_early) ||
        !dj_parse_down(nargs > 4 ? args[4] : Py_None, &dh, &dv, kernel)) {
        return NULL;
    }
    if (!t.stop_early) {
        for (int c = 0; c < n; c++) {
            t.windows[c][0] = t.windows[c][1] = 0;
            t.windows[c][2] = hd->comp[c].height_in_blocks;
            t.windows[c][3] = hd->comp[c].width_in_blocks;
        }
    } else if (!dj_windows_fit(hd, t.windows)) {
        Py_RETURN_NONE; /* the usual path raises its error */
    }
    if (!dj_within_budget(hd, (const unsigned char *)PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0]))) {
        Py_RETURN_NONE;
    }
    PyObject *result = PyTuple_New(n + 1);
    if (result == NULL) {
        return NULL;
    }
    for (int c = 0; c < n; c++) {
        t.down[c] = c > 0 && (dh > 1 || dv > 1);
        long rows, cols;
        dj_out_dims(t.windows[c], t.down[c], dh, dv, &rows, &cols);
        const int64_t shape[3] = {DCTSIZE2, rows, cols};
        void *buf = NULL;
        PyObject *plane = fq_dl_new(3, shape, 2, 32, &buf);
        if (plane == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, c, plane);
        t.outs[c].base = buf;
        t.outs[c].plane_stride = (size_t)rows * (size_t)cols;
        t.outs[c].row_stride = (size_t)cols;
        t.outs[c].channels = DCTSIZE2;
    }
    const int64_t tshape[2] = {n, DCTSIZE2};
    void *tbuf = NULL;
    PyObject *tables = fq_dl_new(2, tshape, 0, 32, &tbuf);
    if (tables == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    for (int c = 0; c < n; c++) {
        for (int k = 0; k < DCTSIZE2; k++) {
            ((int32_t *)tbuf)[c * DCTSIZE2 + k] = hd->comp[c].quant[k];
        }
    }
    PyTuple_SET_ITEM(result, n, tables);
    /* the bytes object stays alive and unchanged (immutable) while the caller holds it */
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const size_t size = (size_t)PyBytes_GET_SIZE(args[0]);
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = dj_decode(hd, data, size, &t, zigzag, dh, dv, kernel);
    Py_END_ALLOW_THREADS
    if (status == 1 && nargs == 7 && args[5] != Py_None) {
        PyObject *built = dj_result(result, n, args[5], args[6]);
        Py_DECREF(result); /* the capsules the tensors took are theirs now; the others free their buffers */
        return built;
    }
    if (status == 1) {
        return result;
    }
    Py_DECREF(result); /* the capsules free their buffers */
    if (status < 0) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(read_coefficients_doc,
             "read_coefficients(data, max_memory, max_scans, zigzag, windows=None, downsample=None, outs=None, *,\n"
             "                  strict=False, max_bytes=0, libjpeg_huffman=False)\n"
             "    -> (planes, quant_tables, warnings)\n\n"
             "windows: None (whole planes) or per component (first row, first column, rows, columns) in blocks.\n"
             "downsample: None or (dh, dv, kernel): the planes of components 1.. are downsampled by dh, dv in {1, 2}\n"
             "(horizontal, vertical; 2x2 pixel averages in the DCT domain, the window's last odd row/column repeated)\n"
             "with kernel, bytes of float32 (8, 16) (freqnets.jpeg.resample.downsample_kernel(2)).\n"
             "outs: None (new bytearrays) or per component (buffer, offset, channels, plane_stride, row_stride):\n"
             "write the first `channels` (0..64) channels of the window straight into the writable float32 buffer at\n"
             "buffer[offset + k * plane_stride + row * row_stride + column] (bounds checked); the planes then\n"
             "hold None instead of bytearrays.\n"
             "planes: [(rows, columns, bytearray of float32 (64, rows, columns))], dequantised,\n"
             "channels in natural order (zigzag=0) or zigzag order (zigzag=1);\n"
             "quant_tables: bytes of uint16 (n_components, 64) natural order; warnings: [str].\n"
             "strict: refuse before allocating a file whose entropy-coded data is too short for its first scan (the\n"
             "RuntimeError below, the reason also in its warnings); damage is reported in the warnings either way.\n"
             "max_bytes: 0 (no limit) or the most bytes the read may allocate (libjpeg's coefficient arrays and\n"
             "the planes), computed from the frame header before anything is allocated; over it the RuntimeError's\n"
             "message starts with 'over max_bytes:'.\n"
             "libjpeg_huffman: decode with libjpeg's own Huffman decoder instead of this module's strict one (which\n"
             "also reports coefficient runs past the block or the spectral band and data left over in a segment).\n"
             "dlpack: without outs, each plane is a DLPack capsule of a float32 (64, rows, columns) tensor instead of\n"
             "a bytearray (torch.from_dlpack takes it without a copy), and quant_tables a capsule of int32\n"
             "(n_components, 64).\n"
             "Raises RuntimeError(message, warnings) on a fatal libjpeg error.");

static PyObject *read_coefficients(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"data",   "max_memory", "max_scans",       "zigzag", "windows", "downsample",
                               "outs",   "strict",     "max_bytes",       "libjpeg_huffman",   "dlpack", NULL};
    Py_buffer buffer;
    unsigned long long max_memory, max_bytes = 0;
    long max_scans;
    int zigzag, strict = 0, libjpeg_huffman = 0, dlpack = 0;
    PyObject *window_arg = Py_None, *down_arg = Py_None, *outs_arg = Py_None;
    long windows[FQ_MAX_COMPONENTS][4] = {{0}};
    int n_windows = 0;
    int dh = 1, dv = 1;
    float kernel[8 * 16];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*Klp|OOO$pKpp", keywords, &buffer, &max_memory, &max_scans,
                                     &zigzag, &window_arg, &down_arg, &outs_arg, &strict, &max_bytes,
                                     &libjpeg_huffman, &dlpack)) {
        return NULL;
    }
    if (down_arg != Py_None) {
        Py_buffer kbuf;
        PyObject *down = PySequence_Tuple(down_arg);
        if (down == NULL || !PyArg_ParseTuple(down, "iiy*", &dh, &dv, &kbuf)) {
            Py_XDECREF(down);
            PyBuffer_Release(&buffer);
            return NULL;
        }
        Py_DECREF(down); /* kbuf holds the kernel's object */
        int bad = (dh != 1 && dh != 2) || (dv != 1 && dv != 2) || kbuf.len != (Py_ssize_t)sizeof kernel;
        if (!bad) {
            memcpy(kernel, kbuf.buf, sizeof kernel);
        }
        PyBuffer_Release(&kbuf);
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "downsample must be (dh, dv, kernel) with dh, dv in {1, 2} and "
                                              "kernel 512 bytes of float32 (8, 16)");
            PyBuffer_Release(&buffer);
            return NULL;
        }
    }
    if (window_arg != Py_None) {
        /* per component (first row, first column, rows, columns) in blocks; checked after the header */
        /* copies (tuples): Python code run while converting the numbers cannot free what is parsed */
        PyObject *seq = PySequence_Tuple(window_arg);
        if (seq == NULL || PyTuple_GET_SIZE(seq) > FQ_MAX_COMPONENTS) {
            if (seq != NULL) {
                PyErr_SetString(PyExc_ValueError, "windows: at most 4 components");
            }
            Py_XDECREF(seq);
            PyBuffer_Release(&buffer);
            return NULL;
        }
        n_windows = (int)PyTuple_GET_SIZE(seq);
        for (int i = 0; i < n_windows; i++) {
            PyObject *item = PySequence_Tuple(PyTuple_GET_ITEM(seq, i));
            if (item == NULL ||
                !PyArg_ParseTuple(item, "llll", &windows[i][0], &windows[i][1], &windows[i][2], &windows[i][3])) {
                Py_XDECREF(item);
                Py_DECREF(seq);
                PyBuffer_Release(&buffer);
                return NULL;
            }
            Py_DECREF(item);
        }
        Py_DECREF(seq);
    }
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        PyBuffer_Release(&buffer);
        return PyErr_NoMemory();
    }
    s->err.max_scans = max_scans;
    s->err.strict = strict;
    s->libjpeg_huffman = libjpeg_huffman;
    s->max_bytes = max_bytes;
    s->has_outs = outs_arg != Py_None;
    s->dh = dh;
    s->dv = dv;
    if (window_arg != Py_None) {
        s->has_windows = 1;
        memcpy(s->windows, windows, sizeof windows);
    }
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = decode_coefficients(s, (const unsigned char *)buffer.buf, (unsigned long)buffer.len,
                             (unsigned long)max_memory);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buffer);
    if (!ok) {
        raise_libjpeg(s);
        close_session(s);
        return NULL;
    }
    int n = s->cinfo.num_components;
    if (window_arg == Py_None) {
        for (int ci = 0; ci < n; ci++) {
            windows[ci][0] = windows[ci][1] = 0;
            windows[ci][2] = (long)s->cinfo.comp_info[ci].height_in_blocks;
            windows[ci][3] = (long)s->cinfo.comp_info[ci].width_in_blocks;
        }
    } else if (n_windows != n) {
        snprintf(s->err.error, sizeof s->err.error, "block window outside the component's block grid");
        raise_libjpeg(s);
        close_session(s);
        return NULL;
    }
    struct given_outs given;
    struct plane_out checked[FQ_MAX_COMPONENTS]; /* every output validated before anything is written */
    if (outs_arg != Py_None) {
        if (!parse_outs(outs_arg, n, &given)) {
            close_session(s);
            return NULL;
        }
        for (int ci = 0; ci < n; ci++) {
            const int down = ci > 0 && (dh > 1 || dv > 1);
            const long rows = down ? (windows[ci][2] + dv - 1) / dv : windows[ci][2];
            const long cols = down ? (windows[ci][3] + dh - 1) / dh : windows[ci][3];
            if (!out_fits(&given, ci, rows, cols, &checked[ci])) {
                release_outs(&given);
                close_session(s);
                return NULL;
            }
        }
    }
    PyObject *planes = PyList_New(n);
    UINT16 quant[FQ_MAX_COMPONENTS * DCTSIZE2];
    if (planes == NULL) {
        if (outs_arg != Py_None) {
            release_outs(&given);
        }
        close_session(s);
        return NULL;
    }
    for (int ci = 0; ci < n; ci++) {
        jpeg_component_info *comp = &s->cinfo.comp_info[ci];
        JQUANT_TBL *table =
            comp->quant_table != NULL ? comp->quant_table : s->cinfo.quant_tbl_ptrs[comp->quant_tbl_no];
        for (int k = 0; k < DCTSIZE2; k++) {
            quant[ci * DCTSIZE2 + k] = table != NULL ? table->quantval[k] : 0;
        }
        const int down = ci > 0 && (dh > 1 || dv > 1);
        const long out_rows = down ? (windows[ci][2] + dv - 1) / dv : windows[ci][2];
        const long out_cols = down ? (windows[ci][3] + dh - 1) / dh : windows[ci][3];
        PyObject *data;
        struct plane_out o;
        if (outs_arg == Py_None) {
            Py_ssize_t size = (Py_ssize_t)out_rows * out_cols * DCTSIZE2 * sizeof(float);
            if (dlpack) {
                const int64_t shape[3] = {DCTSIZE2, out_rows, out_cols};
                void *buf = NULL;
                data = fq_dl_new(3, shape, 2, 32, &buf);
                o.base = buf;
            } else {
                data = PyByteArray_FromStringAndSize(NULL, size);
                o.base = data != NULL ? (float *)PyByteArray_AS_STRING(data) : NULL;
            }
            if (data == NULL) {
                Py_DECREF(planes);
                close_session(s);
                return NULL;
            }
            o.plane_stride = (size_t)out_rows * (size_t)out_cols;
            o.row_stride = (size_t)out_cols;
            o.channels = DCTSIZE2;
        } else {
            data = Py_NewRef(Py_None);
            o = checked[ci];
        }
        Py_BEGIN_ALLOW_THREADS
        if (o.channels == 0) {
            ok = 1;
        } else {
            ok = down ? write_plane_downsampled(s, ci, &o, zigzag, windows[ci], dh, dv, kernel)
                      : write_plane(s, ci, &o, zigzag, windows[ci]);
        }
        Py_END_ALLOW_THREADS
        PyObject *item = ok ? Py_BuildValue("(iiN)", (int)out_rows, (int)out_cols, data)
                            : NULL;
        if (item == NULL) {
            if (!ok) {
                Py_DECREF(data);
                raise_libjpeg(s);
            }
            Py_DECREF(planes);
            if (outs_arg != Py_None) {
                release_outs(&given);
            }
            close_session(s);
            return NULL;
        }
        PyList_SET_ITEM(planes, ci, item);
    }
    if (outs_arg != Py_None) {
        release_outs(&given);
    }
    PyObject *warnings = warnings_list(s);
    PyObject *tables;
    if (dlpack && outs_arg == Py_None) {
        const int64_t shape[2] = {n, DCTSIZE2};
        void *buf = NULL;
        tables = fq_dl_new(2, shape, 0, 32, &buf);
        for (int k = 0; tables != NULL && k < n * DCTSIZE2; k++) {
            ((int32_t *)buf)[k] = quant[k];
        }
    } else {
        tables = PyBytes_FromStringAndSize((const char *)quant, (Py_ssize_t)n * DCTSIZE2 * sizeof(UINT16));
    }
    close_session(s);
    if (warnings == NULL || tables == NULL) {
        Py_XDECREF(warnings);
        Py_XDECREF(tables);
        Py_DECREF(planes);
        return NULL;
    }
    return Py_BuildValue("(NNN)", planes, tables, warnings);
}

/* ---------------------------------------------------------------------------------------------------
 * Planned batches (DCTReadCollate): the per-file work of a batch without Python. Files of a data set share
 * a few distinct headers; for each, Python computes once a plan (where its planes go in a sample of the
 * batch, the block windows, the chroma downsampling, the budget figures of freqnets/jpeg/budget.py), and
 * C finds each file's plan by its header bytes (match_headers) and then, on several threads without the
 * GIL, checks the file's own limits, decodes it and writes it into its slot (read_planned).
 * --------------------------------------------------------------------------------------------------- */

PyDoc_STRVAR(match_headers_doc,
             "match_headers(datas, prefixes) -> [index of the prefix each file starts with, or -1]\n\n"
             "datas: bytes objects; prefixes: bytes (whole headers, SOI to the end of the first SOS segment). A file\n"
             "starting with exactly a header's bytes has exactly that header (the parser reads nothing else).");

static PyObject *match_headers(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *datas_arg, *prefixes_arg;
    if (!PyArg_ParseTuple(args, "OO", &datas_arg, &prefixes_arg)) {
        return NULL;
    }
    PyObject *datas = PySequence_Tuple(datas_arg);
    PyObject *prefixes = datas != NULL ? PySequence_Tuple(prefixes_arg) : NULL;
    PyObject *result = prefixes != NULL ? PyList_New(PyTuple_GET_SIZE(datas)) : NULL;
    const Py_ssize_t n_prefixes = prefixes != NULL ? PyTuple_GET_SIZE(prefixes) : 0;
    for (Py_ssize_t k = 0; result != NULL && k < n_prefixes; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(prefixes, k))) {
            PyErr_SetString(PyExc_TypeError, "match_headers: prefixes must be bytes");
            Py_CLEAR(result);
        }
    }
    Py_ssize_t last = 0; /* files of a batch mostly share one header: try the last match first */
    for (Py_ssize_t i = 0; result != NULL && i < PyTuple_GET_SIZE(datas); i++) {
        PyObject *data = PyTuple_GET_ITEM(datas, i);
        if (!PyBytes_Check(data)) {
            PyErr_SetString(PyExc_TypeError, "match_headers: datas must be bytes");
            Py_CLEAR(result);
            break;
        }
        const Py_ssize_t size = PyBytes_GET_SIZE(data);
        long found = -1;
        for (Py_ssize_t j = 0; j < n_prefixes && found < 0; j++) {
            const Py_ssize_t k = (last + j) % n_prefixes;
            PyObject *prefix = PyTuple_GET_ITEM(prefixes, k);
            const Py_ssize_t length = PyBytes_GET_SIZE(prefix);
            if (length <= size && memcmp(PyBytes_AS_STRING(data), PyBytes_AS_STRING(prefix), (size_t)length) == 0) {
                found = (long)k;
                last = k;
            }
        }
        PyObject *value = PyLong_FromLong(found);
        if (value == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, value);
    }
    Py_XDECREF(datas);
    Py_XDECREF(prefixes);
    return result;
}

struct planned_out {
    int buffer; /* 0: the luma batch, 1: the chroma batch */
    Py_ssize_t offset, channels, plane_stride, row_stride; /* in floats, within one sample */
    long rows, cols;                                       /* the plane libjpeg must return */
};

struct plan {
    unsigned long long max_memory;
    int has_windows, n_components, dh, dv;
    long windows[FQ_MAX_COMPONENTS][4];
    struct planned_out outs[FQ_MAX_COMPONENTS];
    Py_ssize_t data_start;
    unsigned long long first_scan_bits, blocks;
    const struct dj_header *direct; /* the direct path's header, NULL: none */
    PyObject *direct_owner;         /* its capsule, a reference held until read_planned returns */
};

struct planned_batch {
    const unsigned char **data;
    Py_ssize_t *size;
    const long *index; /* the plan of each file, -1: none */
    signed char *status;
    Py_ssize_t n_files, next;
    const struct plan *plans;
    float *base[2];
    Py_ssize_t sample[2]; /* floats of one sample in each batch buffer */
    long max_scans;
    int zigzag;
    unsigned long long work_allowance, work_per_byte;
    float kernel[8 * 16];
    /* finishing (DCTCollate.finish per sample): normalise, and for the stacked layout write x */
    int finish;
    float *x; /* stacked (B, ky + 2 kc, hy, wy); NULL: the planes layout, normalised in place */
    Py_ssize_t ky, kc, hy, wy, hc, wc;
    int fv, fh;
    const float *mean, *std; /* ky + 2 kc each; NULL: no normalisation */
};

/* Sample i laid out as DCTCollate.finish lays out a batch, with the same float32 operations (a subtraction
 * and a division, each rounded once, as torch's sub and div): luma channels normalised, chroma channels
 * normalised and, for the stacked layout, repeated to the luma grid (luma block (r, c) takes chroma block
 * (r / fv, c / fh)). */
static void finish_planned(const struct planned_batch *b, Py_ssize_t i) {
    float *y = b->base[0] + i * b->sample[0], *c = b->base[1] + i * b->sample[1];
    const Py_ssize_t ny = b->hy * b->wy, nc = b->hc * b->wc, channels = b->ky + 2 * b->kc;
    const float *mean = b->mean, *std = b->std;
    if (b->x == NULL) {
        for (Py_ssize_t k = 0; mean != NULL && k < channels; k++) {
            float *plane = k < b->ky ? y + k * ny : c + (k - b->ky) * nc;
            const Py_ssize_t n = k < b->ky ? ny : nc;
            const float m = mean[k], sd = std[k];
            for (Py_ssize_t j = 0; j < n; j++) {
                plane[j] = (plane[j] - m) / sd;
            }
        }
        return;
    }
    float *x = b->x + i * channels * ny;
    for (Py_ssize_t k = 0; k < b->ky; k++) {
        const float *src = y + k * ny;
        float *dst = x + k * ny;
        if (mean == NULL) {
            memcpy(dst, src, (size_t)ny * sizeof(float));
            continue;
        }
        const float m = mean[k], sd = std[k];
        for (Py_ssize_t j = 0; j < ny; j++) {
            dst[j] = (src[j] - m) / sd;
        }
    }
    for (Py_ssize_t k = 0; k < 2 * b->kc; k++) {
        const float *src = c + k * nc;
        float *dst = x + (b->ky + k) * ny;
        const float m = mean != NULL ? mean[b->ky + k] : 0.0f, sd = mean != NULL ? std[b->ky + k] : 1.0f;
        for (Py_ssize_t r = 0; r < b->hy; r++) {
            const float *row = src + (r / b->fv) * b->wc;
            float *out = dst + r * b->wy;
            for (Py_ssize_t col = 0; col < b->wy; col++) {
                out[col] = mean != NULL ? (row[col / b->fh] - m) / sd : row[col / b->fh];
            }
        }
    }
}

/* One file: 0 when decoded and written, 1 when the general path must read it (a limit reached, an error, a
 * corrupt-data warning, an unexpected grid: the general path reports or recovers exactly). */
static int run_planned(const struct planned_batch *b, Py_ssize_t i) {
    const struct plan *p = &b->plans[b->index[i]];
    const unsigned char *data = b->data[i];
    const Py_ssize_t size = b->size[i];
    /* budget.check_read's figures that depend on the file: too short for the first scan (refused, or read
     * with the general path's lower limit), more scans x blocks than the file's size allows */
    if (size < p->data_start || 8ULL * (unsigned long long)(size - p->data_start) < p->first_scan_bits) {
        return 1;
    }
    if (!scans_within_work(data, (size_t)size, (size_t)p->data_start, p->blocks, b->work_allowance,
                           b->work_per_byte)) {
        return 1;
    }
    if (p->direct != NULL) {
        /* the direct path, with the plan's windows and outputs (which must be the grids it writes) */
        const struct dj_header *hd = p->direct;
        struct dj_target t;
        memset(&t, 0, sizeof t);
        int fits = hd->n_components == p->n_components;
        t.stop_early = p->has_windows;
        for (int ci = 0; fits && ci < p->n_components; ci++) {
            if (p->has_windows) {
                memcpy(t.windows[ci], p->windows[ci], sizeof t.windows[ci]);
            } else {
                t.windows[ci][0] = t.windows[ci][1] = 0;
                t.windows[ci][2] = hd->comp[ci].height_in_blocks;
                t.windows[ci][3] = hd->comp[ci].width_in_blocks;
            }
            t.down[ci] = ci > 0 && (p->dh > 1 || p->dv > 1);
            long rows, cols;
            dj_out_dims(t.windows[ci], t.down[ci], p->dh, p->dv, &rows, &cols);
            const struct planned_out *po = &p->outs[ci];
            fits = rows == po->rows && cols == po->cols;
            t.outs[ci].base = b->base[po->buffer] + i * b->sample[po->buffer] + po->offset;
            t.outs[ci].plane_stride = (size_t)po->plane_stride;
            t.outs[ci].row_stride = (size_t)po->row_stride;
            t.outs[ci].channels = (int)po->channels;
        }
        fits = fits && dj_windows_fit(hd, (const long(*)[4])t.windows);
        if (fits && dj_decode(hd, data, (size_t)size, &t, b->zigzag, p->dh, p->dv, b->kernel) == 1) {
            return 0;
        }
        /* not taken: the libjpeg path reads it, into a clean slot */
        memset(b->base[0] + i * b->sample[0], 0, (size_t)b->sample[0] * sizeof(float));
        memset(b->base[1] + i * b->sample[1], 0, (size_t)b->sample[1] * sizeof(float));
    }
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return 1;
    }
    s->err.max_scans = b->max_scans;
    s->err.strict = 1;
    s->has_outs = 1;
    s->dh = p->dh;
    s->dv = p->dv;
    if (p->has_windows) {
        s->has_windows = 1;
        memcpy(s->windows, p->windows, sizeof s->windows);
    }
    int ok = decode_coefficients(s, data, (unsigned long)size, (unsigned long)p->max_memory) &&
             s->cinfo.num_components == p->n_components && s->err.n_warnings == 0;
    const int down = p->dh > 1 || p->dv > 1;
    long windows[FQ_MAX_COMPONENTS][4];
    for (int ci = 0; ok && ci < p->n_components; ci++) {
        if (p->has_windows) {
            memcpy(windows[ci], p->windows[ci], sizeof windows[ci]);
        } else {
            windows[ci][0] = windows[ci][1] = 0;
            windows[ci][2] = (long)s->cinfo.comp_info[ci].height_in_blocks;
            windows[ci][3] = (long)s->cinfo.comp_info[ci].width_in_blocks;
        }
        const long rows = ci > 0 && down ? (windows[ci][2] + p->dv - 1) / p->dv : windows[ci][2];
        const long cols = ci > 0 && down ? (windows[ci][3] + p->dh - 1) / p->dh : windows[ci][3];
        ok = rows == p->outs[ci].rows && cols == p->outs[ci].cols;
    }
    for (int ci = 0; ok && ci < p->n_components; ci++) {
        const struct planned_out *po = &p->outs[ci];
        if (po->channels == 0) {
            continue;
        }
        struct plane_out o;
        o.base = b->base[po->buffer] + i * b->sample[po->buffer] + po->offset;
        o.plane_stride = (size_t)po->plane_stride;
        o.row_stride = (size_t)po->row_stride;
        o.channels = (int)po->channels;
        ok = ci > 0 && down ? write_plane_downsampled(s, ci, &o, b->zigzag, windows[ci], p->dh, p->dv, b->kernel)
                            : write_plane(s, ci, &o, b->zigzag, windows[ci]);
    }
    ok = ok && s->err.n_warnings == 0;
    close_session(s);
    return ok ? 0 : 1;
}

static void *planned_worker(void *arg) {
    struct planned_batch *b = arg;
    for (;;) {
        const Py_ssize_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->n_files) {
            return NULL;
        }
        /* a window smaller than the batch leaves the rest of its slot zero, as DCTCollate pads */
        memset(b->base[0] + i * b->sample[0], 0, (size_t)b->sample[0] * sizeof(float));
        memset(b->base[1] + i * b->sample[1], 0, (size_t)b->sample[1] * sizeof(float));
        b->status[i] = b->index[i] < 0 ? -1 : (signed char)run_planned(b, i);
        if (b->status[i] == 0 && b->finish) {
            finish_planned(b, i);
        }
    }
}

/* plan: (max_memory, windows or None, dh, dv, outs, data_start, first_scan_bits, blocks[, direct]), outs one
 * (buffer, offset, channels, plane_stride, row_stride, rows, cols) per component; every element a plan
 * writes must lie inside one sample of its buffer. 0 with an exception otherwise. */
static int parse_plan(PyObject *arg, struct plan *p, const Py_ssize_t sample[2]) {
    PyObject *item = PySequence_Tuple(arg);
    PyObject *window_arg, *outs_arg, *direct_arg = Py_None;
    if (item == NULL || !PyArg_ParseTuple(item, "KOiiOnKK|O", &p->max_memory, &window_arg, &p->dh, &p->dv, &outs_arg,
                                          &p->data_start, &p->first_scan_bits, &p->blocks, &direct_arg)) {
        Py_XDECREF(item);
        return 0;
    }
    p->direct = NULL;
    if (direct_arg != Py_None) {
        p->direct = PyCapsule_GetPointer(direct_arg, DJ_CAPSULE);
        if (p->direct == NULL) {
            Py_DECREF(item);
            return 0;
        }
        p->direct_owner = Py_NewRef(direct_arg); /* released by read_planned (see done:) */
    }
    int ok = (p->dh == 1 || p->dh == 2) && (p->dv == 1 || p->dv == 2) && p->data_start >= 0;
    PyObject *outs = ok ? PySequence_Tuple(outs_arg) : NULL;
    ok = outs != NULL && PyTuple_GET_SIZE(outs) >= 1 && PyTuple_GET_SIZE(outs) <= FQ_MAX_COMPONENTS;
    p->n_components = ok ? (int)PyTuple_GET_SIZE(outs) : 0;
    for (int ci = 0; ok && ci < p->n_components; ci++) {
        struct planned_out *o = &p->outs[ci];
        PyObject *entry = PySequence_Tuple(PyTuple_GET_ITEM(outs, ci));
        ok = entry != NULL && PyArg_ParseTuple(entry, "innnnll", &o->buffer, &o->offset, &o->channels,
                                               &o->plane_stride, &o->row_stride, &o->rows, &o->cols);
        Py_XDECREF(entry);
        if (!ok) {
            break;
        }
        const Py_ssize_t limit = (Py_ssize_t)1 << 40;
        ok = (o->buffer == 0 || o->buffer == 1) && o->offset >= 0 && o->channels >= 0 && o->channels <= DCTSIZE2 &&
             o->plane_stride >= 0 && o->row_stride >= 0 && o->rows >= 1 && o->cols >= 1 && o->rows <= (1L << 20) &&
             o->cols <= (1L << 20) && o->offset < limit && o->plane_stride < limit && o->row_stride < limit;
        if (ok && o->channels > 0) {
            const Py_ssize_t last = o->offset + (o->channels - 1) * o->plane_stride +
                                    ((Py_ssize_t)o->rows - 1) * o->row_stride + ((Py_ssize_t)o->cols - 1);
            ok = last < sample[o->buffer];
        }
    }
    Py_XDECREF(outs);
    p->has_windows = 0;
    if (ok && window_arg != Py_None) {
        PyObject *seq = PySequence_Tuple(window_arg);
        ok = seq != NULL && PyTuple_GET_SIZE(seq) == p->n_components;
        for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(seq); i++) {
            PyObject *w = PySequence_Tuple(PyTuple_GET_ITEM(seq, i));
            long *wd = p->windows[i];
            ok = w != NULL && PyArg_ParseTuple(w, "llll", &wd[0], &wd[1], &wd[2], &wd[3]);
            Py_XDECREF(w);
        }
        Py_XDECREF(seq);
        p->has_windows = ok;
    }
    Py_DECREF(item);
    if (!ok && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "read_planned: a plan with bad factors, windows or outputs (outside a sample)");
    }
    return ok;
}

PyDoc_STRVAR(read_planned_doc,
             "read_planned(datas, indices, plans, y, cbcr, y_sample, c_sample, threads, max_scans, zigzag, kernel,\n"
             "             work_allowance, work_per_byte, finish=None) -> [status per file]\n\n"
             "Decodes file i (bytes) with plans[indices[i]] (-1: none, status -1) on `threads` threads without the\n"
             "GIL, into sample i of the writable float32 buffers y and cbcr (y_sample, c_sample floats per sample;\n"
             "the slot zeroed first), strictly. Status 0: written; 1: the file needs the general path (over the work\n"
             "or first-scan limits, an error, a corrupt-data warning, an unexpected grid). A plan: (max_memory,\n"
             "windows or None, dh, dv, outs, data_start, first_scan_bits, blocks[, direct]), outs per component (buffer 0/1,\n"
             "offset, channels, plane_stride, row_stride, rows, cols) within a sample; direct: None or a direct_header\n"
             "capsule of the plan's header (the file is then decoded without libjpeg where read_direct would take it).\n"
             "kernel: as read_coefficients'\n"
             "downsample. finish: None, or (x or None, ky, kc, hy, wy, hc, wc, fv, fh, mean or None, std or None):\n"
             "each sample written is then laid out as DCTCollate.finish does (y, cbcr samples (ky, hy, wy),\n"
             "(2 kc, hc, wc); normalised with float32 mean, std of ky + 2 kc channels; x: the stacked batch\n"
             "(B, ky + 2 kc, hy, wy), chroma repeated to the luma grid; None: y and cbcr normalised in place).");

static PyObject *read_planned(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *datas_arg, *indices_arg, *plans_arg, *y_arg, *c_arg, *finish_arg = Py_None;
    Py_buffer kbuf;
    int threads;
    struct planned_batch b = {0};
    if (!PyArg_ParseTuple(args, "OOOOOnnilpy*KK|O", &datas_arg, &indices_arg, &plans_arg, &y_arg, &c_arg,
                          &b.sample[0], &b.sample[1], &threads, &b.max_scans, &b.zigzag, &kbuf, &b.work_allowance,
                          &b.work_per_byte, &finish_arg)) {
        return NULL;
    }
    int kernel_ok = kbuf.len == (Py_ssize_t)sizeof b.kernel;
    if (kernel_ok) {
        memcpy(b.kernel, kbuf.buf, sizeof b.kernel);
    }
    PyBuffer_Release(&kbuf);
    if (!kernel_ok || threads < 1 || threads > 256 || b.sample[0] < 0 || b.sample[1] < 0) {
        PyErr_SetString(PyExc_ValueError, "read_planned: kernel of 512 bytes, threads in 1..256, samples >= 0");
        return NULL;
    }
    Py_buffer views[2], extra[3]; /* extra: x, mean, std of finish */
    int n_extra = 0;
    if (!get_float_buffer(y_arg, &views[0])) {
        return NULL;
    }
    if (!get_float_buffer(c_arg, &views[1])) {
        PyBuffer_Release(&views[0]);
        return NULL;
    }
    PyObject *datas = PySequence_Tuple(datas_arg);
    PyObject *indices = datas != NULL ? PySequence_Tuple(indices_arg) : NULL;
    PyObject *plans = indices != NULL ? PySequence_Tuple(plans_arg) : NULL;
    PyObject *result = NULL;
    struct plan *parsed = NULL;
    void *arrays = NULL;
    Py_ssize_t n_plans = 0;
    if (plans == NULL) {
        goto done;
    }
    b.n_files = PyTuple_GET_SIZE(datas);
    n_plans = PyTuple_GET_SIZE(plans);
    if (PyTuple_GET_SIZE(indices) != b.n_files) {
        PyErr_SetString(PyExc_ValueError, "read_planned: one plan index per file");
        goto done;
    }
    for (int k = 0; k < 2; k++) {
        const Py_ssize_t floats = views[k].len / (Py_ssize_t)sizeof(float);
        if (b.sample[k] > 0 && b.n_files > floats / b.sample[k]) {
            PyErr_SetString(PyExc_ValueError, "read_planned: the batch buffers hold fewer samples than files");
            goto done;
        }
        b.base[k] = views[k].buf;
    }
    if (finish_arg != Py_None) {
        PyObject *x_arg, *mean_arg, *std_arg;
        PyObject *f = PySequence_Tuple(finish_arg);
        int ok = f != NULL && PyArg_ParseTuple(f, "OnnnnnniiOO", &x_arg, &b.ky, &b.kc, &b.hy, &b.wy, &b.hc, &b.wc,
                                               &b.fv, &b.fh, &mean_arg, &std_arg);
        Py_XDECREF(f); /* the buffers below keep their objects */
        ok = ok && b.ky >= 0 && b.kc >= 0 && b.hy >= 1 && b.wy >= 1 && b.fv >= 1 && b.fh >= 1 && b.ky <= DCTSIZE2 &&
             b.kc <= DCTSIZE2 && b.hy <= (1 << 20) && b.wy <= (1 << 20) && b.hc >= (b.hy + b.fv - 1) / b.fv &&
             b.wc >= (b.wy + b.fh - 1) / b.fh && b.hc <= (1 << 20) && b.wc <= (1 << 20) &&
             b.sample[0] == b.ky * b.hy * b.wy && b.sample[1] == 2 * b.kc * b.hc * b.wc &&
             (mean_arg == Py_None) == (std_arg == Py_None);
        const Py_ssize_t channels = b.ky + 2 * b.kc;
        PyObject *objects[3] = {x_arg, mean_arg, std_arg};
        for (int k = 0; ok && k < 3; k++) {
            if (objects[k] == Py_None) {
                continue;
            }
            ok = get_float_buffer(objects[k], &extra[n_extra]);
            if (!ok) {
                goto done;
            }
            const Py_ssize_t floats = extra[n_extra].len / (Py_ssize_t)sizeof(float);
            float *buf = extra[n_extra].buf;
            n_extra++;
            if (k == 0) {
                ok = floats / (channels * b.hy * b.wy > 0 ? channels * b.hy * b.wy : 1) >= b.n_files;
                b.x = buf;
            } else {
                ok = floats == channels;
                *(k == 1 ? &b.mean : &b.std) = buf;
            }
        }
        if (!ok) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "read_planned: finish does not fit the batch buffers");
            }
            goto done;
        }
        b.finish = 1;
    }
    parsed = PyMem_Calloc((size_t)(n_plans > 0 ? n_plans : 1), sizeof *parsed);
    arrays = PyMem_Calloc((size_t)(b.n_files > 0 ? b.n_files : 1),
                          sizeof(unsigned char *) + sizeof(Py_ssize_t) + sizeof(long) + 1);
    if (parsed == NULL || arrays == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_plans; k++) {
        if (!parse_plan(PyTuple_GET_ITEM(plans, k), &parsed[k], b.sample)) {
            goto done;
        }
    }
    b.plans = parsed;
    b.data = arrays;
    b.size = (Py_ssize_t *)(b.data + b.n_files);
    long *index = (long *)(b.size + b.n_files);
    b.index = index;
    b.status = (signed char *)(index + b.n_files);
    for (Py_ssize_t i = 0; i < b.n_files; i++) {
        PyObject *data = PyTuple_GET_ITEM(datas, i);
        index[i] = PyLong_AsLong(PyTuple_GET_ITEM(indices, i));
        if (index[i] == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (!PyBytes_Check(data) || index[i] < -1 || index[i] >= n_plans) {
            PyErr_SetString(PyExc_ValueError, "read_planned: files must be bytes, indices -1 or a plan's");
            goto done;
        }
        /* the tuple holds the bytes objects (immutable) until the end of the call */
        b.data[i] = (const unsigned char *)PyBytes_AS_STRING(data);
        b.size[i] = PyBytes_GET_SIZE(data);
    }
    const int n_threads = (Py_ssize_t)threads < b.n_files ? threads : (int)(b.n_files > 0 ? b.n_files : 1);
    pthread_t pool[256];
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int t = 1; t < n_threads; t++) {
        if (pthread_create(&pool[started], NULL, planned_worker, &b) == 0) {
            started++;
        }
    }
    planned_worker(&b);
    for (int t = 0; t < started; t++) {
        pthread_join(pool[t], NULL);
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(b.n_files);
    for (Py_ssize_t i = 0; result != NULL && i < b.n_files; i++) {
        PyObject *value = PyLong_FromLong(b.status[i]);
        if (value == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, value);
    }
done:
    for (Py_ssize_t k = 0; parsed != NULL && k < n_plans; k++) {
        Py_XDECREF(parsed[k].direct_owner);
    }
    PyMem_Free(parsed);
    PyMem_Free(arrays);
    Py_XDECREF(datas);
    Py_XDECREF(indices);
    Py_XDECREF(plans);
    PyBuffer_Release(&views[0]);
    PyBuffer_Release(&views[1]);
    for (int k = 0; k < n_extra; k++) {
        PyBuffer_Release(&extra[k]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"read_coefficients", (PyCFunction)(void (*)(void))read_coefficients, METH_VARARGS | METH_KEYWORDS,
     read_coefficients_doc},
    {"match_headers", match_headers, METH_VARARGS, match_headers_doc},
    {"read_planned", read_planned, METH_VARARGS, read_planned_doc},
    {"direct_header", direct_header, METH_VARARGS, direct_header_doc},
    {"parse_direct", (PyCFunction)(void (*)(void))parse_direct, METH_FASTCALL, parse_direct_doc},
    {"read_direct", (PyCFunction)(void (*)(void))read_direct, METH_FASTCALL, read_direct_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegc", "JPEG DCT coefficients through libjpeg's jpeg_read_coefficients.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegc(void) {
#if FQ_AVX2
    fq_has_avx2 = __builtin_cpu_supports("avx2");
#endif
    static const char *const names[4] = {"y", "cb", "cr", "quant_tables"};
    for (int i = 0; i < 4; i++) {
        if ((dj_names[i] = PyUnicode_InternFromString(names[i])) == NULL) {
            return NULL;
        }
    }
    if ((dj_dict_name = PyUnicode_InternFromString("__dict__")) == NULL ||
        (dj_post_init_name = PyUnicode_InternFromString("__post_init__")) == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m != NULL) {
        PyModule_AddIntConstant(m, "LIBJPEG_VERSION", JPEG_LIB_VERSION);
    }
    return m;
}
