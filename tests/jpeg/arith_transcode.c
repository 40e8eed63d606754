/*
 * A test helper (not part of freqnets): re-encode a JPEG's quantised DCT coefficients losslessly with
 * libjpeg, as `jpegtran -arithmetic [-progressive]` does, where libjpeg-turbo's tools are not installed.
 *
 * Usage: arith_transcode [-arithmetic] [-progressive] < in.jpg > out.jpg
 * The coefficients, quantisation tables, sampling factors and colour space are copied unchanged; only the
 * entropy coding (arithmetic or Huffman, sequential or progressive) changes. Errors: a message, exit 1.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct failure {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
};

static void fail(j_common_ptr cinfo) {
    (*cinfo->err->output_message)(cinfo);
    longjmp(((struct failure *)cinfo->err)->jump, 1);
}

int main(int argc, char **argv) {
    int arithmetic = 0, progressive = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-arithmetic") == 0) {
            arithmetic = 1;
        } else if (strcmp(argv[i], "-progressive") == 0) {
            progressive = 1;
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    size_t size = 0, capacity = 1 << 16;
    unsigned char *input = malloc(capacity);
    for (size_t got; input != NULL && (got = fread(input + size, 1, capacity - size, stdin)) > 0;) {
        size += got;
        if (size == capacity) {
            capacity *= 2;
            input = realloc(input, capacity);
        }
    }
    if (input == NULL) {
        return 1;
    }
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    struct failure src_err, dst_err;
    unsigned char *output = NULL;
    unsigned long output_size = 0;
    src.err = jpeg_std_error(&src_err.pub);
    dst.err = jpeg_std_error(&dst_err.pub);
    src_err.pub.error_exit = fail;
    dst_err.pub.error_exit = fail;
    if (setjmp(src_err.jump) || setjmp(dst_err.jump)) {
        return 1;
    }
    jpeg_create_decompress(&src);
    jpeg_create_compress(&dst);
    jpeg_mem_src(&src, input, size);
    jpeg_read_header(&src, TRUE);
    jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
    jpeg_copy_critical_parameters(&src, &dst);
    dst.arith_code = arithmetic ? TRUE : FALSE;
    dst.optimize_coding = FALSE;
    if (progressive) {
        jpeg_simple_progression(&dst);
    }
    jpeg_mem_dest(&dst, &output, &output_size);
    jpeg_write_coefficients(&dst, coefficients);
    jpeg_finish_compress(&dst);
    jpeg_finish_decompress(&src);
    fwrite(output, 1, output_size, stdout);
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&src);
    free(output);
    free(input);
    return 0;
}
