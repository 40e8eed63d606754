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
 * caller decides between strict and lenient reading. The GIL is released while decoding.
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

struct reader_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char error[JMSG_LENGTH_MAX];
    int error_code;
    int n_warnings;
    char warnings[MAX_WARNINGS][JMSG_LENGTH_MAX];
    long n_scans;
    long max_scans;
};

struct decoded {
    int n_components;
    int height_in_blocks[FQ_MAX_COMPONENTS];
    int width_in_blocks[FQ_MAX_COMPONENTS];
    JCOEF *coefs[FQ_MAX_COMPONENTS];
    UINT16 quant[FQ_MAX_COMPONENTS][DCTSIZE2];
};

static void reader_error_exit(j_common_ptr cinfo) {
    struct reader_error *err = (struct reader_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->error);
    err->error_code = cinfo->err->msg_code;
    longjmp(err->jump, 1);
}

static void reader_emit_message(j_common_ptr cinfo, int msg_level) {
    struct reader_error *err = (struct reader_error *)cinfo->err;
    if (msg_level < 0) {
        if (err->n_warnings < MAX_WARNINGS) {
            (*cinfo->err->format_message)(cinfo, err->warnings[err->n_warnings]);
        }
        err->n_warnings++;
        cinfo->err->num_warnings++;
    } else if (cinfo->err->msg_code == JTRC_SOS) {
        /* A file with thousands of scans over a large frame is a CPU bomb: cap the scans. */
        if (++err->n_scans > err->max_scans) {
            snprintf(err->error, sizeof err->error, "JPEG has more than %ld scans", err->max_scans);
            err->error_code = -1;
            longjmp(err->jump, 1);
        }
    }
}

static void reader_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void free_decoded(struct decoded *out) {
    for (int i = 0; i < FQ_MAX_COMPONENTS; i++) {
        free(out->coefs[i]);
        out->coefs[i] = NULL;
    }
}

/* Decode without the GIL. Returns 1 on success, 0 with err->error set on failure. */
static int decode_nogil(const unsigned char *data, unsigned long size, unsigned long max_memory,
                        struct reader_error *err, struct decoded *out) {
    struct jpeg_decompress_struct cinfo;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err->pub);
    err->pub.error_exit = reader_error_exit;
    err->pub.emit_message = reader_emit_message;
    err->pub.output_message = reader_output_message;
    if (setjmp(err->jump)) {
        jpeg_destroy_decompress(&cinfo);
        free_decoded(out);
        return 0;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = (long)max_memory;
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.num_components > FQ_MAX_COMPONENTS || cinfo.data_precision != 8) {
        snprintf(err->error, sizeof err->error, "unsupported JPEG (%d components, %d-bit)", cinfo.num_components,
                 cinfo.data_precision);
        err->error_code = -1;
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    jvirt_barray_ptr *arrays = jpeg_read_coefficients(&cinfo);
    out->n_components = cinfo.num_components;
    for (int ci = 0; ci < cinfo.num_components; ci++) {
        jpeg_component_info *comp = &cinfo.comp_info[ci];
        JQUANT_TBL *table = comp->quant_table != NULL ? comp->quant_table : cinfo.quant_tbl_ptrs[comp->quant_tbl_no];
        for (int k = 0; k < DCTSIZE2; k++) {
            out->quant[ci][k] = table != NULL ? table->quantval[k] : 0;
        }
        size_t row_len = (size_t)comp->width_in_blocks * DCTSIZE2;
        out->height_in_blocks[ci] = (int)comp->height_in_blocks;
        out->width_in_blocks[ci] = (int)comp->width_in_blocks;
        out->coefs[ci] = malloc(row_len * comp->height_in_blocks * sizeof(JCOEF) + 1);
        if (out->coefs[ci] == NULL) {
            snprintf(err->error, sizeof err->error, "out of memory for the DCT coefficients");
            err->error_code = -1;
            jpeg_destroy_decompress(&cinfo);
            free_decoded(out);
            return 0;
        }
        for (JDIMENSION row = 0; row < comp->height_in_blocks; row++) {
            JBLOCKARRAY rows = (*cinfo.mem->access_virt_barray)((j_common_ptr)&cinfo, arrays[ci], row, 1, FALSE);
            memcpy(out->coefs[ci] + row * row_len, rows[0][0], row_len * sizeof(JCOEF));
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 1;
}

PyDoc_STRVAR(read_coefficients_doc,
             "read_coefficients(data, max_memory, max_scans) -> (components, quant_tables, warnings)\n\n"
             "components: [(height_in_blocks, width_in_blocks, bytes of int16 (h, w, 64) natural order)];\n"
             "quant_tables: bytes of uint16 (n_components, 64) natural order; warnings: [str].\n"
             "Raises RuntimeError(message, warnings) on a fatal libjpeg error.");

static PyObject *read_coefficients(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buffer;
    unsigned long long max_memory;
    long max_scans;
    if (!PyArg_ParseTuple(args, "y*Kl", &buffer, &max_memory, &max_scans)) {
        return NULL;
    }
    struct reader_error *err = calloc(1, sizeof *err);
    struct decoded *out = calloc(1, sizeof *out);
    if (err == NULL || out == NULL) {
        free(err);
        free(out);
        PyBuffer_Release(&buffer);
        return PyErr_NoMemory();
    }
    err->max_scans = max_scans;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = decode_nogil((const unsigned char *)buffer.buf, (unsigned long)buffer.len, (unsigned long)max_memory, err,
                      out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buffer);
    PyObject *result = NULL;
    PyObject *components = NULL, *quant = NULL;
    PyObject *warnings = PyList_New(0);
    if (warnings == NULL) {
        goto done;
    }
    for (int i = 0; i < err->n_warnings && i < MAX_WARNINGS; i++) {
        PyObject *text = PyUnicode_FromString(err->warnings[i]);
        if (text == NULL || PyList_Append(warnings, text) < 0) {
            Py_XDECREF(text);
            goto fail;
        }
        Py_DECREF(text);
    }
    if (!ok) {
        /* RuntimeError(message, warnings before the error): the caller tells truncation from corruption. */
        PyObject *error = Py_BuildValue("(sO)", err->error, warnings);
        if (error != NULL) {
            PyErr_SetObject(PyExc_RuntimeError, error);
            Py_DECREF(error);
        }
        goto fail;
    }
    components = PyList_New(out->n_components);
    quant = PyBytes_FromStringAndSize((const char *)out->quant, out->n_components * DCTSIZE2 * 2);
    if (components == NULL || quant == NULL) {
        goto fail;
    }
    for (int ci = 0; ci < out->n_components; ci++) {
        Py_ssize_t n = (Py_ssize_t)out->height_in_blocks[ci] * out->width_in_blocks[ci] * DCTSIZE2 * sizeof(JCOEF);
        PyObject *item = Py_BuildValue("(iiy#)", out->height_in_blocks[ci], out->width_in_blocks[ci],
                                       (const char *)out->coefs[ci], n);
        if (item == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(components, ci, item);
    }
    result = Py_BuildValue("(NNN)", components, quant, warnings);
    goto done;
fail:
    Py_XDECREF(components);
    Py_XDECREF(warnings);
    Py_XDECREF(quant);
done:
    free_decoded(out);
    free(out);
    free(err);
    return result;
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
