// The C# host's end of its link to polyfn's `http` proxy (runtimes/dotnet/link.py is the other end): frames
// on two pipes, each a JSON header and a body after their lengths. Compiled into PolyfnHost.exe with Host.cs.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Newtonsoft.Json;

namespace Polyfn.Dotnet
{
    /// What a request's handling produced, sent back to the proxy as one frame.
    class Response
    {
        public int Status = 200;
        public readonly List<string[]> Headers = new List<string[]>();
        public byte[] Body = new byte[0];
        public Dictionary<string, object> Error;
        public List<string[]> Logs;
    }

    /// The proxy's end (runtimes/dotnet/link.py): two pipes, `$POLYFN_HOST_FDS` = "IN,OUT". A frame is a JSON
    /// header and a body, each after its length (4 bytes, big-endian). No HTTP server, no sockets, no thread
    /// pool in the host: a pre-started one has only Mono's own threads when it switches uid.
    class Link
    {
        readonly Stream input, output;
        readonly Pipe pipe;
        readonly object writing = new object();

        public Link(string fds)
        {
            var parts = fds.Split(',');
            pipe = new Pipe(int.Parse(parts[0]));
            input = new BufferedStream(pipe, 65536);
            output = new Pipe(int.Parse(parts[1]));
        }

        Link(Stream input, Stream output) { this.input = input; this.output = output; }
        public static Link Null() { return new Link(Stream.Null, Stream.Null); }

        /// Whether a frame is waiting (before the first Read only: nothing is buffered yet).
        public bool Pending() { return pipe != null && pipe.Readable(); }

        bool Fill(byte[] buf)
        {
            int got = 0;
            while (got < buf.Length)
            {
                int n = input.Read(buf, got, buf.Length - got);
                if (n <= 0) return false;
                got += n;
            }
            return true;
        }

        byte[] Chunk()
        {
            var len = new byte[4];
            if (!Fill(len)) return null;
            var data = new byte[(len[0] << 24) | (len[1] << 16) | (len[2] << 8) | len[3]];
            return Fill(data) ? data : null;
        }

        /// The next frame, or null when the proxy closed the pipe.
        public Tuple<Newtonsoft.Json.Linq.JObject, byte[]> Read()
        {
            var head = Chunk();
            var body = head == null ? null : Chunk();
            if (body == null) return null;
            return Tuple.Create(Newtonsoft.Json.Linq.JObject.Parse(Encoding.UTF8.GetString(head)), body);
        }

        public void Send(Dictionary<string, object> header, byte[] body)
        {
            var head = Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(header, Program.Ascii));
            body = body ?? new byte[0];
            var frame = new byte[8 + head.Length + body.Length];
            int at = 0;
            foreach (var part in new[] { head, body })
            {
                frame[at] = (byte)(part.Length >> 24); frame[at + 1] = (byte)(part.Length >> 16);
                frame[at + 2] = (byte)(part.Length >> 8); frame[at + 3] = (byte)part.Length;
                Buffer.BlockCopy(part, 0, frame, at + 4, part.Length);
                at += 4 + part.Length;
            }
            lock (writing)
                output.Write(frame, 0, frame.Length);
        }

        public void Send(long id, Response r)
        {
            var head = new Dictionary<string, object> { { "id", id }, { "status", r.Status }, { "headers", r.Headers } };
            if (r.Logs != null) head["logs"] = r.Logs;
            if (r.Error != null) head["error"] = r.Error;
            Send(head, r.Body);
        }
    }

    /// A pipe's file descriptor as a Stream (Mono's FileStream refuses pipes): read(2) and write(2).
    class Pipe : Stream
    {
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern IntPtr read(int fd, byte[] buf, IntPtr count);
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern IntPtr write(int fd, byte[] buf, IntPtr count);
        [System.Runtime.InteropServices.DllImport("libc")] static extern int poll(short[] fds, ulong nfds, int timeout);
        const int EINTR = 4;
        readonly int fd;
        public Pipe(int fd) { this.fd = fd; }

        /// poll(2) without waiting: data (or the end) is there to read.
        public bool Readable()
        {
            var pfd = new short[] { (short)fd, (short)(fd >> 16), 1 /* POLLIN */, 0 };  // struct pollfd {int fd; short events, revents}
            return poll(pfd, 1, 0) > 0;
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var chunk = offset == 0 ? buffer : new byte[count];
            while (true)
            {
                long n = (long)read(fd, chunk, new IntPtr(count));
                if (n < 0 && System.Runtime.InteropServices.Marshal.GetLastWin32Error() == EINTR) continue;
                if (n <= 0) return 0;
                if (chunk != buffer) Buffer.BlockCopy(chunk, 0, buffer, offset, (int)n);
                return (int)n;
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                var chunk = offset == 0 ? buffer : new byte[count];
                if (chunk != buffer) Buffer.BlockCopy(buffer, offset, chunk, 0, count);
                long n = (long)write(fd, chunk, new IntPtr(count));
                if (n < 0 && System.Runtime.InteropServices.Marshal.GetLastWin32Error() == EINTR) continue;
                if (n <= 0) throw new IOException("the proxy's pipe is closed");
                offset += (int)n;
                count -= (int)n;
            }
        }

        public override void Flush() { }
        public override bool CanRead { get { return true; } }
        public override bool CanWrite { get { return true; } }
        public override bool CanSeek { get { return false; } }
        public override long Length { get { throw new NotSupportedException(); } }
        public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
        public override long Seek(long offset, SeekOrigin origin) { throw new NotSupportedException(); }
        public override void SetLength(long value) { throw new NotSupportedException(); }
    }
}
