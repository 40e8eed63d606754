/*
 * freqnets.jpeg._jpegc: a JPEG's quantised DCT coefficients through libjpeg(-turbo)'s
 * jpeg_read_coefficients (no inverse DCT, no colour conversion).
 *
 * Copyright 2026 the freqnets authors. Licensed under the Apache License, Version 2.0.
 * libjpeg-turbo is distributed under the IJG licence and the Modified BSD licence.
 *
 * Python validates the headers first (freqnets/jpeg/_markers.py); this module only decodes.
 * libjpeg errors never exit the process: error_exit longjmps back here and becomes a Python
 * exception. libjpeg warnings (corrupt or truncated data) are collected and returned, so the
 * caller decides between strict and lenient reading. The GIL is released while decoding and
 * while writing the output planes.
 *
 * Optionally only a block window of each component is laid out; with a window, single-scan
 * sequential files stop decoding after the window's last iMCU row (see window_source).
 *
 * Output: per component one float32 plane (64, height_in_blocks, width_in_blocks), the
 * dequantised coefficients (quantised value x step, rounded once to float32, so equal to
 * NumPy's float32 product) in natural or zigzag channel order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define MAX_WARNINGS 8
#define FQ_MAX_COMPONENTS 4

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
};

/* A memory source that can end the data (a fake EOI, as libjpeg's memory source does at the real end)
 * once the iMCU rows a block window needs are decoded: used for single-scan sequential files with a
 * window, where nothing after those rows is returned. Data is handed over in chunks so the check runs
 * every WINDOW_CHUNK bytes. */
#define WINDOW_CHUNK 4096
struct window_source {
    struct jpeg_source_mgr pub;
    const JOCTET *data;
    size_t size, pos;
    long stop_after; /* stop once input_iMCU_row > stop_after; -1: never */
};

struct session {
    struct jpeg_decompress_struct cinfo;
    struct reader_error err;
    struct window_source source;
    jvirt_barray_ptr *arrays;
    int created;
    int has_windows;
    long windows[FQ_MAX_COMPONENTS][4]; /* per component: first row, first column, rows, columns */
};

static const JOCTET fake_eoi[2] = {0xFF, JPEG_EOI};

static void window_init_source(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean window_fill_input_buffer(j_decompress_ptr cinfo) {
    struct window_source *src = (struct window_source *)cinfo->src;
    int stop = src->stop_after >= 0 && (long)cinfo->input_iMCU_row > src->stop_after;
    if (stop || src->pos >= src->size) {
        if (stop) {
            ((struct reader_error *)cinfo->err)->stopped = 1;
        } else {
            WARNMS(cinfo, JWRN_JPEG_EOF);
        }
        src->pub.next_input_byte = fake_eoi;
        src->pub.bytes_in_buffer = 2;
        return TRUE;
    }
    size_t n = src->size - src->pos < WINDOW_CHUNK ? src->size - src->pos : WINDOW_CHUNK;
    src->pub.next_input_byte = src->data + src->pos;
    src->pub.bytes_in_buffer = n;
    src->pos += n;
    return TRUE;
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
    jpeg_read_header(&s->cinfo, TRUE);
    if (s->cinfo.num_components > FQ_MAX_COMPONENTS || s->cinfo.data_precision != 8) {
        snprintf(s->err.error, sizeof s->err.error, "unsupported JPEG (%d components, %d-bit)",
                 s->cinfo.num_components, s->cinfo.data_precision);
        return 0;
    }
    if (s->has_windows) {
        /* the windows must lie in the block grids; the last iMCU row any of them needs */
        long last = 0;
        for (int ci = 0; ci < s->cinfo.num_components; ci++) {
            const long *wd = s->windows[ci];
            jpeg_component_info *comp = &s->cinfo.comp_info[ci];
            if (wd[0] < 0 || wd[1] < 0 || wd[2] < 1 || wd[3] < 1 || wd[0] + wd[2] > (long)comp->height_in_blocks ||
                wd[1] + wd[3] > (long)comp->width_in_blocks) {
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

/* Phase 2, without the GIL: dequantise and transpose component ci into out (64, h, w) float32. */
static int write_plane(struct session *s, int ci, float *out, int zigzag, const long *window) {
    if (setjmp(s->err.jump)) {
        return 0;
    }
    j_decompress_ptr cinfo = &s->cinfo;
    jpeg_component_info *comp = &cinfo->comp_info[ci];
    JQUANT_TBL *table = comp->quant_table != NULL ? comp->quant_table : cinfo->quant_tbl_ptrs[comp->quant_tbl_no];
    /* window: first block row, first block column, rows, columns of the component's block grid */
    size_t r0 = (size_t)window[0], c0 = (size_t)window[1], h = (size_t)window[2], w = (size_t)window[3];
    size_t plane = h * w;
    int source[DCTSIZE2];
    float step[DCTSIZE2];
    for (int k = 0; k < DCTSIZE2; k++) {
        source[k] = zigzag ? zigzag_to_natural[k] : k;
        step[k] = table != NULL ? (float)table->quantval[source[k]] : 0.0f;
    }
    for (JDIMENSION row = 0; row < h; row++) {
        JBLOCKARRAY rows =
            (*cinfo->mem->access_virt_barray)((j_common_ptr)cinfo, s->arrays[ci], (JDIMENSION)(r0 + row), 1, FALSE);
        JBLOCKROW blocks = rows[0] + c0;
        for (int k = 0; k < DCTSIZE2; k++) {
            float *dst = out + k * plane + row * w;
            const int src = source[k];
            const float q = step[k];
            /* Both factors are exact in float32 (|coef| < 2^15, step < 2^16), so the product is the
             * exact integer product rounded once, as NumPy's float32 product is. */
            for (size_t x = 0; x < w; x++) {
                dst[x] = (float)blocks[x][src] * q;
            }
        }
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

PyDoc_STRVAR(read_coefficients_doc,
             "read_coefficients(data, max_memory, max_scans, zigzag, windows=None) -> (planes, quant_tables, warnings)\n\n"
             "windows: None (whole planes) or per component (first row, first column, rows, columns) in blocks.\n"
             "planes: [(rows, columns, bytearray of float32 (64, rows, columns))], dequantised,\n"
             "channels in natural order (zigzag=0) or zigzag order (zigzag=1);\n"
             "quant_tables: bytes of uint16 (n_components, 64) natural order; warnings: [str].\n"
             "Raises RuntimeError(message, warnings) on a fatal libjpeg error.");

static PyObject *read_coefficients(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buffer;
    unsigned long long max_memory;
    long max_scans;
    int zigzag;
    PyObject *window_arg = Py_None;
    long windows[FQ_MAX_COMPONENTS][4] = {{0}};
    int n_windows = 0;
    if (!PyArg_ParseTuple(args, "y*Klp|O", &buffer, &max_memory, &max_scans, &zigzag, &window_arg)) {
        return NULL;
    }
    if (window_arg != Py_None) {
        /* per component (first row, first column, rows, columns) in blocks; checked after the header */
        PyObject *seq = PySequence_Fast(window_arg, "windows must be a sequence of 4-tuples");
        if (seq == NULL || PySequence_Fast_GET_SIZE(seq) > FQ_MAX_COMPONENTS) {
            if (seq != NULL) {
                PyErr_SetString(PyExc_ValueError, "windows: at most 4 components");
            }
            Py_XDECREF(seq);
            PyBuffer_Release(&buffer);
            return NULL;
        }
        n_windows = (int)PySequence_Fast_GET_SIZE(seq);
        for (int i = 0; i < n_windows; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
            if (!PyArg_ParseTuple(item, "llll", &windows[i][0], &windows[i][1], &windows[i][2], &windows[i][3])) {
                Py_DECREF(seq);
                PyBuffer_Release(&buffer);
                return NULL;
            }
        }
        Py_DECREF(seq);
    }
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        PyBuffer_Release(&buffer);
        return PyErr_NoMemory();
    }
    s->err.max_scans = max_scans;
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
    PyObject *planes = PyList_New(n);
    UINT16 quant[FQ_MAX_COMPONENTS * DCTSIZE2];
    if (planes == NULL) {
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
        Py_ssize_t size = (Py_ssize_t)windows[ci][2] * windows[ci][3] * DCTSIZE2 * sizeof(float);
        PyObject *data = PyByteArray_FromStringAndSize(NULL, size);
        if (data == NULL) {
            Py_DECREF(planes);
            close_session(s);
            return NULL;
        }
        float *out = (float *)PyByteArray_AS_STRING(data);
        Py_BEGIN_ALLOW_THREADS
        ok = write_plane(s, ci, out, zigzag, windows[ci]);
        Py_END_ALLOW_THREADS
        PyObject *item = ok ? Py_BuildValue("(iiN)", (int)windows[ci][2], (int)windows[ci][3], data)
                            : NULL;
        if (item == NULL) {
            if (!ok) {
                Py_DECREF(data);
                raise_libjpeg(s);
            }
            Py_DECREF(planes);
            close_session(s);
            return NULL;
        }
        PyList_SET_ITEM(planes, ci, item);
    }
    PyObject *warnings = warnings_list(s);
    PyObject *tables = PyBytes_FromStringAndSize((const char *)quant, (Py_ssize_t)n * DCTSIZE2 * sizeof(UINT16));
    close_session(s);
    if (warnings == NULL || tables == NULL) {
        Py_XDECREF(warnings);
        Py_XDECREF(tables);
        Py_DECREF(planes);
        return NULL;
    }
    return Py_BuildValue("(NNN)", planes, tables, warnings);
}

static PyMethodDef methods[] = {
    {"read_coefficients", read_coefficients, METH_VARARGS, read_coefficients_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegc", "JPEG DCT coefficients through libjpeg's jpeg_read_coefficients.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegc(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL) {
        PyModule_AddIntConstant(m, "LIBJPEG_VERSION", JPEG_LIB_VERSION);
    }
    return m;
}
