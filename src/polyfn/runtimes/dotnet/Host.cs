// polyfn's host for Azure Functions C# (in-process model): loads the user's compiled assembly and serves one
// [FunctionName] method over HTTP on $PORT, the http runtime's contract (runtimes/http/proxy.py relays polyfn's
// invocations to it). `describe ASSEMBLY` prints what the assembly declares as JSON, for deploy-time checks.
//
// Per request: the ASP.NET Core HttpRequest shim is built from the HTTP request, Run's parameters are bound
// by type and attribute, its Task awaited and the IActionResult written as ASP.NET Core would. ILogger lines
// go back in one X-Polyfn-Logs response header (so they reach the right invocation whatever the pipes do);
// an exception becomes a 500 in polyfn's function error shape with the .NET exception type.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Reflection;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.WebJobs;
using Microsoft.Azure.WebJobs.Extensions.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Newtonsoft.Json;
using Newtonsoft.Json.Serialization;

namespace Polyfn.Dotnet
{
    class Request : HttpRequest
    {
        readonly HeaderDictionary headers = new HeaderDictionary();
        public override string Method { get; set; }
        public override string Scheme { get; set; }
        public override bool IsHttps { get; set; }
        public override HostString Host { get; set; }
        public override PathString PathBase { get; set; }
        public override PathString Path { get; set; }
        public override QueryString QueryString { get; set; }
        public override IQueryCollection Query { get; set; }
        public override string Protocol { get; set; }
        public override IHeaderDictionary Headers { get { return headers; } }
        public override IRequestCookieCollection Cookies { get; set; }
        public override long? ContentLength { get { return headers.ContentLength; } set { headers.ContentLength = value; } }
        public override string ContentType { get { return headers["Content-Type"]; } set { headers["Content-Type"] = value; } }
        public override Stream Body { get; set; }
        public override bool HasFormContentType
        {
            get
            {
                var ct = ContentType ?? "";
                return ct.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase)
                    || ct.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase);
            }
        }
    }

    class Cookies : Dictionary<string, string>, IRequestCookieCollection
    {
        public new string this[string key] { get { string v; return TryGetValue(key, out v) ? v : null; } }
    }

    /// The invocation's ILogger: lines kept in order, sent back with the response.
    class Logger : ILogger
    {
        public readonly List<string[]> Lines = new List<string[]>();
        public void Log<TState>(LogLevel level, EventId id, TState state, Exception exception, Func<TState, Exception, string> formatter)
        {
            if (level == LogLevel.None) return;
            string text = formatter != null ? formatter(state, exception) : Convert.ToString(state);
            lock (Lines)
                foreach (var line in (text ?? "").Split('\n'))
                    Lines.Add(new[] { level >= LogLevel.Warning ? "stderr" : "stdout", "[" + level + "] " + line.TrimEnd('\r') });
        }
        public bool IsEnabled(LogLevel level) { return level != LogLevel.None; }
        public IDisposable BeginScope<TState>(TState state) { return new Scope(); }
        class Scope : IDisposable { public void Dispose() { } }
    }

    class Fn
    {
        public string Name;
        public MethodInfo Method;
        public string Trigger = "";
        public string[] Methods = new string[0];
        public string AuthLevel = "";
        public string Route;
        public string Schedule;
        public string Path;
        public List<string> Problems = new List<string>();

        public static Fn From(MethodInfo m, FunctionNameAttribute name)
        {
            var fn = new Fn { Name = name.Name, Method = m };
            foreach (var p in m.GetParameters())
            {
                var t = p.ParameterType;
                var http = p.GetCustomAttribute<HttpTriggerAttribute>();
                var timer = p.GetCustomAttribute<TimerTriggerAttribute>();
                var blob = p.GetCustomAttribute<BlobTriggerAttribute>();
                var queue = p.GetCustomAttribute<QueueTriggerAttribute>();
                if (http != null)
                {
                    fn.Trigger = "http";
                    fn.Methods = (http.Methods ?? new string[0]).Select(s => s.ToUpperInvariant()).ToArray();
                    fn.AuthLevel = http.AuthLevel.ToString();
                    fn.Route = http.Route;
                    if (t != typeof(HttpRequest))
                        fn.Problems.Add("parameter " + p.Name + ": [HttpTrigger] binds HttpRequest here, not " + t.FullName);
                }
                else if (timer != null)
                {
                    fn.Trigger = "timer";
                    fn.Schedule = timer.ScheduleExpression;
                    if (t != typeof(TimerInfo))
                        fn.Problems.Add("parameter " + p.Name + ": [TimerTrigger] binds TimerInfo, not " + t.FullName);
                }
                else if (blob != null || queue != null)
                {
                    fn.Trigger = blob != null ? "blob" : "queue";
                    fn.Path = blob != null ? blob.BlobPath : queue.QueueName;
                    if (t != typeof(string) && t != typeof(Stream) && t != typeof(byte[]))
                        fn.Problems.Add("parameter " + p.Name + ": [" + (blob != null ? "Blob" : "Queue") + "Trigger] binds string, Stream or byte[] here, not " + t.FullName);
                }
                else if (t == typeof(ILogger) || t == typeof(Microsoft.Azure.WebJobs.ExecutionContext) || t == typeof(CancellationToken)
                         || (blob == null && fn.Trigger == "blob" && t == typeof(string)))
                {
                }
                else if (t == typeof(string) && (p.Name == "name" || p.Name == "blobName"))
                {
                    // {name} of a BlobTrigger path
                }
                else
                {
                    var attrs = p.GetCustomAttributes(false).Select(a => a.GetType().Name).ToArray();
                    fn.Problems.Add("parameter " + p.Name + " (" + t.FullName + (attrs.Length > 0 ? ", [" + string.Join(", ", attrs) + "]" : "")
                        + "): polyfn binds HttpRequest with [HttpTrigger], TimerInfo with [TimerTrigger], [BlobTrigger] and [QueueTrigger] values, ILogger, ExecutionContext and CancellationToken");
                }
            }
            if (fn.Trigger == "")
                fn.Problems.Add("no trigger: one parameter needs [HttpTrigger], [TimerTrigger], [BlobTrigger] or [QueueTrigger]");
            if (!m.IsStatic)
                fn.Problems.Add(m.DeclaringType.FullName + "." + m.Name + " is not static (polyfn runs the in-process model's static functions)");
            return fn;
        }

        public static List<Fn> All(Assembly asm)
        {
            var list = new List<Fn>();
            foreach (var type in asm.GetTypes())
                foreach (var m in type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly))
                {
                    var name = m.GetCustomAttribute<FunctionNameAttribute>();
                    if (name != null) list.Add(From(m, name));
                }
            return list;
        }
    }

    static class Program
    {
        static readonly JsonSerializerSettings Camel = new JsonSerializerSettings { ContractResolver = new CamelCasePropertyNamesContractResolver() };
        static readonly JsonSerializerSettings Ascii = new JsonSerializerSettings { StringEscapeHandling = StringEscapeHandling.EscapeNonAscii };
        const int MaxLogHeader = 60000;

        static int Main(string[] args)
        {
            if (args.Length == 2 && args[0] == "describe")
            {
                var fns = Fn.All(Assembly.LoadFrom(args[1]));
                Console.WriteLine(JsonConvert.SerializeObject(fns.Select(f => new Dictionary<string, object> {
                    { "name", f.Name }, { "method", f.Method.DeclaringType.FullName + "." + f.Method.Name }, { "trigger", f.Trigger },
                    { "methods", f.Methods }, { "auth_level", f.AuthLevel }, { "route", f.Route }, { "schedule", f.Schedule },
                    { "path", f.Path }, { "problems", f.Problems } })));
                return 0;
            }
            if (args.Length != 3 || args[0] != "serve")
            {
                Console.Error.WriteLine("usage: PolyfnHost.exe describe ASSEMBLY | serve ASSEMBLY FUNCTION_NAME");
                return 2;
            }
            var fn = Fn.All(Assembly.LoadFrom(args[1])).FirstOrDefault(f => f.Name == args[2]);
            if (fn == null)
            {
                Console.Error.WriteLine("no [FunctionName(\"" + args[2] + "\")] in " + args[1]);
                return 3;
            }
            var port = Environment.GetEnvironmentVariable("PORT") ?? "8080";
            var listener = new HttpListener();
            listener.Prefixes.Add("http://127.0.0.1:" + port + "/");
            listener.Start();
            while (true)
            {
                var ctx = listener.GetContext();
                Task.Run(() => Serve(fn, ctx));
            }
        }

        static Dictionary<string, StringValues> ParseQuery(string query)
        {
            var d = new Dictionary<string, StringValues>(StringComparer.OrdinalIgnoreCase);
            foreach (var part in (query ?? "").TrimStart('?').Split('&'))
            {
                if (part.Length == 0) continue;
                int eq = part.IndexOf('=');
                string k = Unescape(eq < 0 ? part : part.Substring(0, eq)), v = eq < 0 ? "" : Unescape(part.Substring(eq + 1));
                StringValues old;
                d[k] = d.TryGetValue(k, out old) ? StringValues.Concat(old, v) : new StringValues(v);
            }
            return d;
        }

        static string Unescape(string s) { return Uri.UnescapeDataString(s.Replace('+', ' ')); }

        static async Task Serve(Fn fn, HttpListenerContext ctx)
        {
            var logger = new Logger();
            var res = ctx.Response;
            try
            {
                var raw = ctx.Request;
                var body = new MemoryStream();
                await raw.InputStream.CopyToAsync(body);
                body.Position = 0;
                var req = new Request
                {
                    Method = raw.HttpMethod, Scheme = "http", Protocol = "HTTP/1.1", Path = new PathString(raw.Url.AbsolutePath),
                    PathBase = new PathString(""), QueryString = new QueryString(raw.Url.Query), Query = new QueryCollection(ParseQuery(raw.Url.Query)),
                    Body = body,
                };
                foreach (string k in raw.Headers.AllKeys)
                    req.Headers[k] = new StringValues(raw.Headers.GetValues(k));
                req.Host = new HostString(req.Headers["Host"]);
                var cookies = new Cookies();
                foreach (Cookie c in raw.Cookies) cookies.Add(c.Name, c.Value);
                req.Cookies = cookies;
                if (fn.Trigger == "http" && fn.Methods.Length > 0 && Array.IndexOf(fn.Methods, raw.HttpMethod.ToUpperInvariant()) < 0)
                {
                    Write(res, 405, "application/json", Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(new { error = new {
                        code = "method_not_allowed", message = fn.Name + " accepts " + string.Join(", ", fn.Methods) + " ([HttpTrigger]), not " + raw.HttpMethod } })), logger);
                    return;
                }
                object ret = Invoke(fn, req, body, logger);
                var task = ret as Task;
                if (task != null)
                {
                    await task;
                    var prop = task.GetType().GetProperty("Result");
                    ret = prop != null && task.GetType().IsGenericType ? prop.GetValue(task) : null;
                    if (ret != null && ret.GetType().FullName == "System.Threading.Tasks.VoidTaskResult") ret = null;
                }
                Execute(ret, res, logger);
            }
            catch (Exception e)
            {
                while ((e is TargetInvocationException || e is AggregateException) && e.InnerException != null) e = e.InnerException;
                var err = new Dictionary<string, object> {
                    { "errorType", e.GetType().FullName }, { "errorMessage", e.Message },
                    { "stackTrace", (e.StackTrace ?? "").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.Contains("Polyfn.Dotnet.")).ToArray() } };
                logger.Log(LogLevel.Error, 0, e.GetType().FullName + ": " + e.Message, null, (s, x) => s);
                res.Headers["X-Polyfn-Function-Error"] = "Unhandled";
                Write(res, 500, "application/json", Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(err)), logger);
            }
        }

        static object Invoke(Fn fn, Request req, MemoryStream body, Logger logger)
        {
            var ps = fn.Method.GetParameters();
            var args = new object[ps.Length];
            for (int i = 0; i < ps.Length; i++)
            {
                var t = ps[i].ParameterType;
                if (t == typeof(HttpRequest)) args[i] = req;
                else if (t == typeof(ILogger)) args[i] = logger;
                else if (t == typeof(CancellationToken)) args[i] = CancellationToken.None;
                else if (t == typeof(Microsoft.Azure.WebJobs.ExecutionContext))
                    args[i] = new Microsoft.Azure.WebJobs.ExecutionContext { InvocationId = Guid.NewGuid(), FunctionName = fn.Name,
                        FunctionDirectory = Directory.GetCurrentDirectory(), FunctionAppDirectory = Directory.GetCurrentDirectory() };
                else if (t == typeof(TimerInfo)) args[i] = new TimerInfo();
                else if (t == typeof(string)) args[i] = new StreamReader(body).ReadToEnd();
                else if (t == typeof(byte[])) args[i] = body.ToArray();
                else if (t == typeof(Stream)) args[i] = body;
            }
            return fn.Method.Invoke(null, args);
        }

        static void Execute(object result, HttpListenerResponse res, Logger logger)
        {
            const string text = "text/plain; charset=utf-8", json = "application/json; charset=utf-8";
            if (result == null) { Write(res, 204, null, null, logger); return; }
            var content = result as ContentResult;
            if (content != null) { Write(res, content.StatusCode ?? 200, content.ContentType ?? text, Encoding.UTF8.GetBytes(content.Content ?? ""), logger); return; }
            var js = result as JsonResult;
            if (js != null)
            {
                var settings = js.SerializerSettings as JsonSerializerSettings ?? Camel;
                Write(res, js.StatusCode ?? 200, js.ContentType ?? json, Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(js.Value, settings)), logger);
                return;
            }
            var redirect = result as RedirectResult;
            if (redirect != null) { res.Headers["Location"] = redirect.Url; Write(res, redirect.Permanent ? 301 : 302, null, null, logger); return; }
            var file = result as FileContentResult;
            if (file != null) { Write(res, 200, file.ContentType, file.FileContents, logger); return; }
            var obj = result as ObjectResult;
            if (obj == null && !(result is IActionResult)) obj = new ObjectResult(result);  // a plain return value
            if (obj != null)
            {
                var created = obj as CreatedResult;
                if (created != null && created.Location != null) res.Headers["Location"] = created.Location;
                int status = obj.StatusCode ?? 200;
                if (obj.Value == null) { Write(res, status == 200 ? 204 : status, null, null, logger); return; }
                var s = obj.Value as string;
                if (s != null) Write(res, status, obj.ContentType ?? text, Encoding.UTF8.GetBytes(s), logger);
                else Write(res, status, obj.ContentType ?? json, Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(obj.Value, Camel)), logger);
                return;
            }
            var code = result as StatusCodeResult;
            if (code != null) { Write(res, code.StatusCode, null, null, logger); return; }
            throw new NotSupportedException("polyfn cannot write a " + result.GetType().FullName + " (supported: ObjectResult and its kinds, StatusCodeResult and its kinds, ContentResult, JsonResult, RedirectResult, FileContentResult)");
        }

        static void Write(HttpListenerResponse res, int status, string contentType, byte[] body, Logger logger)
        {
            res.StatusCode = status;
            if (contentType != null) res.ContentType = contentType;
            string logs;
            lock (logger.Lines) logs = logger.Lines.Count == 0 ? null : JsonConvert.SerializeObject(logger.Lines, Ascii);
            if (logs != null && logs.Length > MaxLogHeader) logs = JsonConvert.SerializeObject(new[] { new[] { "stderr", "[polyfn] this invocation's log lines exceeded " + MaxLogHeader + " bytes and were dropped" } });
            if (logs != null) res.Headers["X-Polyfn-Logs"] = logs;
            body = body ?? new byte[0];
            res.ContentLength64 = body.Length;
            if (body.Length > 0) res.OutputStream.Write(body, 0, body.Length);
            res.OutputStream.Close();
        }
    }
}
