// polyfn's host for Azure Functions C# (in-process model): loads the user's compiled assembly and serves one
// [FunctionName] method to polyfn's `http` proxy (runtimes/http/proxy.py), which relays the server's invocations
// as frames on two pipes (Link.cs; runtimes/dotnet/link.py is the other end). `describe ASSEMBLY` prints what
// the assembly declares as JSON, for deploy-time checks.
//
// Per request: the ASP.NET Core HttpRequest shim is built from the frame, Run's parameters are bound by type and
// attribute, its Task awaited and the IActionResult written as ASP.NET Core would. ILogger lines go back with the
// response (so they reach the right invocation whatever the pipes do); an exception becomes a 500 in polyfn's
// function error shape with the .NET exception type.
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
                    // attribute data, not instances: describe runs at deploy, where no user code may run
                    var attrs = p.GetCustomAttributesData().Select(a => a.AttributeType.Name).ToArray();
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

    /// What a pre-started host runs before its function comes, so that the paths every function takes are
    /// compiled already: reflection over [FunctionName], binding, ILogger, results, Json.NET, `dynamic`, errors.
    static class WarmUp
    {
        [FunctionName("polyfn-warm-up")]
        public static async Task<IActionResult> Run([HttpTrigger(AuthorizationLevel.Anonymous, "get", "post")] HttpRequest req, ILogger log)
        {
            log.LogInformation("warm-up {Kind}", (string)req.Query["kind"]);
            string body = await new StreamReader(req.Body).ReadToEndAsync();
            string name = req.Query["name"];
            switch ((string)req.Query["kind"])
            {
                case "dynamic":
                    dynamic data = JsonConvert.DeserializeObject(body);
                    name = name ?? data?.name;
                    return new OkObjectResult("Hello, " + name);
                case "object": return new OkObjectResult(new { Name = name, Count = 1 });
                case "json": return new JsonResult(new { Name = name });
                case "throw": throw new InvalidOperationException("warm-up");
            }
            return new OkObjectResult("Hello, " + name);
        }
    }

    static class Program
    {
        static readonly JsonSerializerSettings Camel = new JsonSerializerSettings { ContractResolver = new CamelCasePropertyNamesContractResolver() };
        internal static readonly JsonSerializerSettings Ascii = new JsonSerializerSettings { StringEscapeHandling = StringEscapeHandling.EscapeNonAscii };

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
            var fds = Environment.GetEnvironmentVariable("POLYFN_HOST_FDS");
            if (args.Length == 1 && args[0] == "wait" && fds != null)
                return Wait(new Link(fds));
            if (args.Length != 3 || args[0] != "serve" || fds == null)
            {
                Console.Error.WriteLine("usage: POLYFN_HOST_FDS=IN,OUT PolyfnHost.exe serve ASSEMBLY FUNCTION_NAME | wait; PolyfnHost.exe describe ASSEMBLY");
                return 2;
            }
            var link = new Link(fds);
            var fn = Fn.All(Assembly.LoadFrom(args[1])).FirstOrDefault(f => f.Name == args[2]);
            if (fn == null)
            {
                link.Send(new Dictionary<string, object> { { "error", "no [FunctionName(\"" + args[2] + "\")] in " + args[1] } }, null);
                return 3;
            }
            link.Send(new Dictionary<string, object> { { "ready", true } }, null);
            Loop(link, fn, Concurrency(Environment.GetEnvironmentVariable("POLYFN_CONCURRENCY")));
            return 0;
        }

        static int Concurrency(string s)
        {
            int n;
            return int.TryParse(s, out n) && n > 1 ? n : 1;
        }

        /// Requests until the proxy closes the pipe: one at a time on this thread (concurrency 1: no thread
        /// pool at all), else each on the thread pool.
        static void Loop(Link link, Fn fn, int concurrency)
        {
            Tuple<Newtonsoft.Json.Linq.JObject, byte[]> frame;
            while ((frame = link.Read()) != null)
            {
                var f = frame;
                if (concurrency <= 1)
                    Handle(link, fn, f.Item1, f.Item2);
                else
                    ThreadPool.QueueUserWorkItem(_ => Handle(link, fn, f.Item1, f.Item2));
            }
        }

        static void Handle(Link link, Fn fn, Newtonsoft.Json.Linq.JObject head, byte[] body)
        {
            var id = (long)head["id"];
            Response res;
            try { res = Serve(fn, head, body).GetAwaiter().GetResult(); }
            catch (Exception e) { res = Failure(e, new Logger()); }
            link.Send(id, res);
        }

        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int setgroups(IntPtr size, IntPtr list);
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int getgroups(int size, IntPtr list);
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int setgid(uint gid);
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int setuid(uint uid);
        [System.Runtime.InteropServices.DllImport("libc")] static extern uint getuid();
        [System.Runtime.InteropServices.DllImport("libc")] static extern uint getgid();

        class Job { public string Assembly, Name, Cwd; public uint Uid, Gid; public int Concurrency; public Dictionary<string, string> Env = new Dictionary<string, string>(); }

        static Job ParseJob(Newtonsoft.Json.Linq.JObject j)
        {
            var job = new Job { Assembly = (string)j["assembly"], Name = (string)j["name"], Cwd = (string)j["cwd"],
                                Uid = (uint)j["uid"], Gid = (uint)j["gid"], Concurrency = (int?)j["concurrency"] ?? 1 };
            foreach (var kv in (Newtonsoft.Json.Linq.JObject)j["env"])
                job.Env[kv.Key] = (string)kv.Value;
            return job;
        }

        /// A pre-started host (runtimes/http/proxy.py's blank mode): it warms up, then waits for its function —
        /// one frame {"job": {assembly, name, uid, gid, env, cwd, concurrency}} — becomes the function's uid (glibc
        /// applies it to every thread) before loading any of its code, and answers {"ready": true} or {"error"}.
        static int Wait(Link link)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var phases = new Dictionary<string, double>();
            Action<string> phase = name => { phases[name] = Math.Round(clock.Elapsed.TotalMilliseconds, 2); clock.Restart(); };
            Warm(link);
            phase("warm-up");  // (how long the warm-up took, and then how long the host waited for its function)
            var frame = link.Read();
            if (frame == null) return 0;
            phase("idle");
            Fn fn;
            Job job;
            try
            {
                job = ParseJob((Newtonsoft.Json.Linq.JObject)frame.Item1["job"]);
                phase("job");
                if (job.Uid != 0)
                {
                    // (setgroups only when the groups are not empty already: each of these calls stops every thread)
                    if ((getgroups(0, IntPtr.Zero) != 0 && setgroups(IntPtr.Zero, IntPtr.Zero) != 0)
                        || (getgid() != job.Gid && setgid(job.Gid) != 0) || setuid(job.Uid) != 0 || getuid() != job.Uid)
                        throw new InvalidOperationException("sandbox: could not switch to uid " + job.Uid);
                }
                phase("uid");
                foreach (var kv in job.Env)
                    Environment.SetEnvironmentVariable(kv.Key, kv.Value);
                Directory.SetCurrentDirectory(job.Cwd);
                var assembly = Assembly.LoadFrom(job.Assembly);
                phase("load");
                fn = Fn.All(assembly).FirstOrDefault(f => f.Name == job.Name);
                phase("bind");
                if (fn == null) throw new InvalidOperationException("no [FunctionName(\"" + job.Name + "\")] in " + job.Assembly);
            }
            catch (Exception e)
            {
                link.Send(new Dictionary<string, object> { { "error", e.GetType().FullName + ": " + e.Message } }, null);
                return 3;
            }
            link.Send(new Dictionary<string, object> { { "ready", true }, { "ms", phases } }, null);
            Loop(link, fn, job.Concurrency);
            return 0;
        }

        /// The warm-up: a job parsed, the host's own [FunctionName] found by reflection and served through the
        /// whole request path (a string, an object, a JsonResult, `dynamic`, an exception: the most common first),
        /// frames written to nowhere. It stops early when the function comes meanwhile (a busy machine).
        static void Warm(Link link)
        {
            try
            {
                ParseJob(Newtonsoft.Json.Linq.JObject.Parse("{\"job\": {\"assembly\": \"a\", \"name\": \"n\", \"uid\": 1, \"gid\": 1, \"cwd\": \"/\", \"concurrency\": 1, \"env\": {\"A\": \"b\"}}}")["job"] as Newtonsoft.Json.Linq.JObject);
                var fn = Fn.All(typeof(WarmUp).Assembly).First(f => f.Name == "polyfn-warm-up");
                var sink = Link.Null();
                foreach (var kind in new[] { "string", "object", "json", "dynamic", "throw" })
                {
                    if (link.Pending()) return;
                    var head = Newtonsoft.Json.Linq.JObject.Parse("{\"id\": 1, \"method\": \"POST\", \"path\": \"/api/warm\", \"query\": \"kind=" + kind
                        + "\", \"headers\": [[\"Host\", \"localhost\"], [\"Content-Type\", \"application/json\"], [\"Cookie\", \"a=b\"]], \"trigger\": false}");
                    Handle(sink, fn, head, Encoding.UTF8.GetBytes("{\"name\": \"warm\"}"));
                }
            }
            catch (Exception) { }
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

        static Cookies ParseCookies(StringValues headers)
        {
            var cookies = new Cookies();
            foreach (var header in headers)
                foreach (var part in (header ?? "").Split(';'))
                {
                    int eq = part.IndexOf('=');
                    if (eq <= 0) continue;
                    var name = part.Substring(0, eq).Trim();
                    if (name.Length > 0 && !cookies.ContainsKey(name)) cookies.Add(name, part.Substring(eq + 1).Trim().Trim('"'));
                }
            return cookies;
        }

        /// One request (a frame: {id, method, path, query, headers, trigger} and the body) through the function.
        static async Task<Response> Serve(Fn fn, Newtonsoft.Json.Linq.JObject head, byte[] data)
        {
            var logger = new Logger();
            var res = new Response();
            try
            {
                var method = (string)head["method"] ?? "POST";
                var query = (string)head["query"] ?? "";
                var body = new MemoryStream(data, 0, data.Length, false, true);
                var req = new Request
                {
                    Method = method, Scheme = "http", Protocol = "HTTP/1.1", Path = new PathString((string)head["path"] ?? "/"),
                    PathBase = new PathString(""), QueryString = new QueryString(query.Length > 0 ? "?" + query : ""),
                    Query = new QueryCollection(ParseQuery(query)), Body = body,
                };
                foreach (Newtonsoft.Json.Linq.JArray kv in (Newtonsoft.Json.Linq.JArray)head["headers"])
                {
                    string k = (string)kv[0], v = (string)kv[1];
                    req.Headers[k] = req.Headers.ContainsKey(k) ? StringValues.Concat(req.Headers[k], v) : new StringValues(v);
                }
                if (data.Length > 0 || !(method == "GET" || method == "HEAD" || method == "DELETE" || method == "OPTIONS"))
                    req.ContentLength = data.Length;
                req.Host = new HostString(req.Headers["Host"]);
                req.Cookies = ParseCookies(req.Headers["Cookie"]);
                if (fn.Trigger == "http" && fn.Methods.Length > 0 && Array.IndexOf(fn.Methods, method.ToUpperInvariant()) < 0)
                {
                    Write(res, 405, "application/json", Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(new { error = new {
                        code = "method_not_allowed", message = fn.Name + " accepts " + string.Join(", ", fn.Methods) + " ([HttpTrigger]), not " + method } })), logger);
                    return res;
                }
                object ret = null;
                foreach (var binding in Bindings(fn, (bool?)head["trigger"] ?? false, body))
                {
                    ret = Invoke(fn, req, binding, logger);
                    var task = ret as Task;
                    if (task != null)
                    {
                        await task;
                        var prop = task.GetType().GetProperty("Result");
                        ret = prop != null && task.GetType().IsGenericType ? prop.GetValue(task) : null;
                        if (ret != null && ret.GetType().FullName == "System.Threading.Tasks.VoidTaskResult") ret = null;
                    }
                }
                Execute(ret, res, logger);
                return res;
            }
            catch (Exception e)
            {
                return Failure(e, logger);
            }
        }

        /// An exception in the function (or in writing its result): a 500 in polyfn's function error shape.
        static Response Failure(Exception e, Logger logger)
        {
            while ((e is TargetInvocationException || e is AggregateException) && e.InnerException != null) e = e.InnerException;
            var err = new Dictionary<string, object> {
                { "errorType", e.GetType().FullName }, { "errorMessage", e.Message },
                { "stackTrace", (e.StackTrace ?? "").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.Contains("Polyfn.Dotnet.")).ToArray() } };
            logger.Log(LogLevel.Error, 0, e.GetType().FullName + ": " + e.Message, null, (s, x) => s);
            var res = new Response { Error = err };
            Write(res, 500, "application/json", Encoding.UTF8.GetBytes(JsonConvert.SerializeObject(err)), logger);
            return res;
        }

        /// What a trigger's parameters get, per call: a queue batch is one call per message, as on Azure.
        class Binding { public TimerInfo Timer; public byte[] Data = new byte[0]; public string Name; }

        static List<Binding> Bindings(Fn fn, bool trigger, MemoryStream body)
        {
            var list = new List<Binding>();
            if (!trigger || fn.Trigger == "http")
            {
                list.Add(new Binding { Data = body.ToArray() });
                return list;
            }
            var j = Newtonsoft.Json.Linq.JObject.Parse(Encoding.UTF8.GetString(body.ToArray()));
            if (fn.Trigger == "timer")
            {
                var t = j["timer"];
                var st = t["ScheduleStatus"];
                Func<Newtonsoft.Json.Linq.JToken, DateTime> when = v => v == null || v.Type == Newtonsoft.Json.Linq.JTokenType.Null ? DateTime.MinValue : v.ToObject<DateTime>();
                list.Add(new Binding { Timer = new TimerInfo { IsPastDue = (bool)t["IsPastDue"],
                    ScheduleStatus = new Microsoft.Azure.WebJobs.Extensions.Timers.ScheduleStatus { Last = when(st["Last"]), Next = when(st["Next"]), LastUpdated = when(st["LastUpdated"]) } } });
            }
            else if (fn.Trigger == "blob")
            {
                var b = j["blob"];
                list.Add(new Binding { Data = Convert.FromBase64String((string)b["content_base64"] ?? ""), Name = (string)b["key"] });
            }
            else
                foreach (var m in j["messages"])
                    list.Add(new Binding { Data = Encoding.UTF8.GetBytes((string)m["body"] ?? "") });
            return list;
        }

        static object Invoke(Fn fn, Request req, Binding binding, Logger logger)
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
                else if (t == typeof(TimerInfo)) args[i] = binding.Timer ?? new TimerInfo();
                else if (t == typeof(string) && ps[i].GetCustomAttribute<BlobTriggerAttribute>() == null
                         && ps[i].GetCustomAttribute<QueueTriggerAttribute>() == null) args[i] = binding.Name;  // {name}
                else if (t == typeof(string)) args[i] = Encoding.UTF8.GetString(binding.Data);
                else if (t == typeof(byte[])) args[i] = binding.Data;
                else if (t == typeof(Stream)) args[i] = new MemoryStream(binding.Data, false);
            }
            return fn.Method.Invoke(null, args);
        }

        static void Execute(object result, Response res, Logger logger)
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
            if (redirect != null) { res.Headers.Add(new[] { "Location", redirect.Url }); Write(res, redirect.Permanent ? 301 : 302, null, null, logger); return; }
            var file = result as FileContentResult;
            if (file != null) { Write(res, 200, file.ContentType, file.FileContents, logger); return; }
            var obj = result as ObjectResult;
            if (obj == null && !(result is IActionResult)) obj = new ObjectResult(result);  // a plain return value
            if (obj != null)
            {
                var created = obj as CreatedResult;
                if (created != null && created.Location != null) res.Headers.Add(new[] { "Location", created.Location });
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

        static void Write(Response res, int status, string contentType, byte[] body, Logger logger)
        {
            res.Status = status;
            if (contentType != null) res.Headers.Add(new[] { "Content-Type", contentType });
            lock (logger.Lines) res.Logs = logger.Lines.Count == 0 ? null : new List<string[]>(logger.Lines);
            res.Body = body ?? new byte[0];
        }
    }
}
