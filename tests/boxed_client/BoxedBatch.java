/*
 * Test code: runs DCC Boxed's signing tool (dccboxed-signing-tool, shipped as tool.jar in the npm
 * package @smartdcc/duis-sign-wrap) on many documents in one JVM.
 *
 * The tool's Sign and Validate mains read one document each; starting a JVM per document costs
 * about 1.5 CPU seconds here. This driver calls the same entry points the mains call
 * (Sign.main_aux / Validate.main_aux, with the file name and flags the command line would carry),
 * one document at a time, with the tool's stdout and stderr captured per document.
 *
 * Protocol (stdin, one line per document): "<mode> <path>", mode sign | sign-preserve | validate.
 * Reply (stdout) per document: a line "<exit code> <stdout bytes> <stderr bytes>", then those bytes.
 * Where the tool itself calls System.exit (it does on a document it cannot parse), the JVM ends;
 * the caller reads that exit code from the process and starts a new driver for the rest.
 *
 * Sign replaces the RequestID counter with System.currentTimeMillis() unless --preserveCounter, as
 * DCC Boxed does; two documents signed within one millisecond would get the same counter, which a
 * harness signing one document per JVM never sees, so each sign here waits for the next millisecond.
 *
 * Run with the JDK's source launcher: java -cp tool.jar BoxedBatch.java
 */

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import uk.co.smartdcc.boxed.xmldsig.ResultCode;
import uk.co.smartdcc.boxed.xmldsig.Sign;
import uk.co.smartdcc.boxed.xmldsig.Validate;

public final class BoxedBatch {
  private static long lastSigned = 0;

  private BoxedBatch() {
  }

  public static void main(final String[] args) throws Exception {
    PrintStream reply = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false);
    BufferedReader requests = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = requests.readLine()) != null) {
      int space = line.indexOf(' ');
      String mode = line.substring(0, space);
      String path = line.substring(space + 1);
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      ByteArrayOutputStream err = new ByteArrayOutputStream();
      PrintStream toolOut = new PrintStream(out, true);
      PrintStream toolErr = new PrintStream(err, true);
      System.setOut(toolOut);
      System.setErr(toolErr);
      ResultCode code;
      if (mode.equals("validate")) {
        code = Validate.main_aux(new String[] {path});
      } else if (mode.equals("sign")) {
        awaitNextMillisecond();
        code = Sign.main_aux(new String[] {path});
      } else if (mode.equals("sign-preserve")) {
        code = Sign.main_aux(new String[] {path, "--preserveCounter"});
      } else {
        throw new IllegalArgumentException("unknown mode " + mode);
      }
      toolOut.flush();
      toolErr.flush();
      byte[] outBytes = out.toByteArray();
      byte[] errBytes = err.toByteArray();
      reply.print(code.value() + " " + outBytes.length + " " + errBytes.length + "\n");
      reply.write(outBytes);
      reply.write(errBytes);
      reply.flush();
    }
  }

  private static void awaitNextMillisecond() throws InterruptedException {
    while (System.currentTimeMillis() <= lastSigned) {
      Thread.sleep(1);
    }
    lastSigned = System.currentTimeMillis();
  }
}
