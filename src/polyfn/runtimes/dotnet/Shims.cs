// The Azure Functions in-process API surface polyfn provides (WebJobs attributes, ASP.NET Core's HttpRequest and
// action results, Microsoft.Extensions.Logging's ILogger), compiled once per node into Polyfn.Azure.Shims.dll.
// Only what functions use to declare and answer; the host (Host.cs) reads the declarations by reflection.
// C# 7 (what Debian's mcs compiles).
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Microsoft.Extensions.Primitives
{
    public struct StringValues : IEnumerable<string>
    {
        readonly string[] values;
        public StringValues(string value) { values = value == null ? null : new[] { value }; }
        public StringValues(string[] values) { this.values = values; }
        public static readonly StringValues Empty = new StringValues(new string[0]);
        public int Count { get { return values == null ? 0 : values.Length; } }
        public string this[int index] { get { return values[index]; } }
        public static implicit operator string(StringValues v) { return v.ToString(); }
        public static implicit operator string[](StringValues v) { return v.ToArray(); }
        public static implicit operator StringValues(string v) { return new StringValues(v); }
        public static implicit operator StringValues(string[] v) { return new StringValues(v); }
        public static bool IsNullOrEmpty(StringValues v) { return v.Count == 0 || (v.Count == 1 && string.IsNullOrEmpty(v[0])); }
        public string[] ToArray() { return values == null ? new string[0] : (string[])values.Clone(); }
        public override string ToString()
        {
            if (values == null || values.Length == 0) return null;
            return values.Length == 1 ? values[0] : string.Join(",", values);
        }
        public IEnumerator<string> GetEnumerator() { return ((IEnumerable<string>)ToArray()).GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }
        public static StringValues Concat(StringValues a, string b) { return new StringValues(a.ToArray().Concat(new[] { b }).ToArray()); }
    }
}

namespace Microsoft.Extensions.Logging
{
    public enum LogLevel { Trace = 0, Debug = 1, Information = 2, Warning = 3, Error = 4, Critical = 5, None = 6 }

    public struct EventId
    {
        public EventId(int id, string name = null) { Id = id; Name = name; }
        public int Id { get; private set; }
        public string Name { get; private set; }
        public static implicit operator EventId(int id) { return new EventId(id); }
    }

    public interface ILogger
    {
        void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception exception, Func<TState, Exception, string> formatter);
        bool IsEnabled(LogLevel logLevel);
        IDisposable BeginScope<TState>(TState state);
    }

    public interface ILogger<out TCategoryName> : ILogger { }

    public static class LoggerExtensions
    {
        /// Message templates ("Hello {Name}") are filled positionally, as Microsoft.Extensions.Logging does.
        public static string Format(string message, object[] args)
        {
            if (message == null || args == null || args.Length == 0) return message;
            var sb = new StringBuilder();
            int n = 0;
            for (int i = 0; i < message.Length; i++)
            {
                char c = message[i];
                if (c == '{' && i + 1 < message.Length && message[i + 1] == '{') { sb.Append('{'); i++; continue; }
                if (c == '}' && i + 1 < message.Length && message[i + 1] == '}') { sb.Append('}'); i++; continue; }
                int end = c == '{' ? message.IndexOf('}', i) : -1;
                if (end > i && n < args.Length)
                {
                    object a = args[n++];
                    sb.Append(a == null ? "(null)" : a.ToString());
                    i = end;
                    continue;
                }
                sb.Append(c);
            }
            return sb.ToString();
        }

        static void Write(ILogger logger, LogLevel level, EventId id, Exception exception, string message, object[] args)
        {
            string text = Format(message, args);
            logger.Log(level, id, text, exception, (s, e) => e == null ? s : s + Environment.NewLine + e);
        }

        public static void Log(this ILogger logger, LogLevel level, string message, params object[] args) { Write(logger, level, 0, null, message, args); }
        public static void Log(this ILogger logger, LogLevel level, Exception exception, string message, params object[] args) { Write(logger, level, 0, exception, message, args); }
        public static void Log(this ILogger logger, LogLevel level, EventId id, Exception exception, string message, params object[] args) { Write(logger, level, id, exception, message, args); }
        public static void LogTrace(this ILogger logger, string message, params object[] args) { Write(logger, LogLevel.Trace, 0, null, message, args); }
        public static void LogTrace(this ILogger logger, Exception exception, string message, params object[] args) { Write(logger, LogLevel.Trace, 0, exception, message, args); }
        public static void LogDebug(this ILogger logger, string message, params object[] args) { Write(logger, LogLevel.Debug, 0, null, message, args); }
        public static void LogDebug(this ILogger logger, Exception exception, string message, params object[] args) { Write(logger, LogLevel.Debug, 0, exception, message, args); }
        public static void LogInformation(this ILogger logger, string message, params object[] args) { Write(logger, LogLevel.Information, 0, null, message, args); }
        public static void LogInformation(this ILogger logger, Exception exception, string message, params object[] args) { Write(logger, LogLevel.Information, 0, exception, message, args); }
        public static void LogWarning(this ILogger logger, string message, params object[] args) { Write(logger, LogLevel.Warning, 0, null, message, args); }
        public static void LogWarning(this ILogger logger, Exception exception, string message, params object[] args) { Write(logger, LogLevel.Warning, 0, exception, message, args); }
        public static void LogError(this ILogger logger, string message, params object[] args) { Write(logger, LogLevel.Error, 0, null, message, args); }
        public static void LogError(this ILogger logger, Exception exception, string message, params object[] args) { Write(logger, LogLevel.Error, 0, exception, message, args); }
        public static void LogCritical(this ILogger logger, string message, params object[] args) { Write(logger, LogLevel.Critical, 0, null, message, args); }
        public static void LogCritical(this ILogger logger, Exception exception, string message, params object[] args) { Write(logger, LogLevel.Critical, 0, exception, message, args); }
    }
}

namespace Microsoft.Azure.WebJobs.Extensions.Http
{
    public enum AuthorizationLevel { Anonymous = 0, User = 1, Function = 2, System = 3, Admin = 4 }
}

namespace Microsoft.Azure.WebJobs.Description
{
    [AttributeUsage(AttributeTargets.Class)]
    public sealed class BindingAttribute : Attribute { }
}

namespace Microsoft.Azure.WebJobs
{
    using Microsoft.Azure.WebJobs.Extensions.Http;

    [AttributeUsage(AttributeTargets.Method)]
    public sealed class FunctionNameAttribute : Attribute
    {
        public FunctionNameAttribute(string name) { Name = name; }
        public string Name { get; private set; }
    }

    [AttributeUsage(AttributeTargets.Parameter)]
    public sealed class HttpTriggerAttribute : Attribute
    {
        public HttpTriggerAttribute() : this(AuthorizationLevel.Function) { }
        public HttpTriggerAttribute(params string[] methods) : this(AuthorizationLevel.Function, methods) { }
        public HttpTriggerAttribute(AuthorizationLevel authLevel, params string[] methods) { AuthLevel = authLevel; Methods = methods; }
        public AuthorizationLevel AuthLevel { get; private set; }
        public string[] Methods { get; private set; }
        public string Route { get; set; }
    }

    [AttributeUsage(AttributeTargets.Parameter)]
    public sealed class TimerTriggerAttribute : Attribute
    {
        public TimerTriggerAttribute(string scheduleExpression) { ScheduleExpression = scheduleExpression; }
        public string ScheduleExpression { get; private set; }
        public bool RunOnStartup { get; set; }
        public bool UseMonitor { get; set; }
    }

    [AttributeUsage(AttributeTargets.Parameter)]
    public sealed class BlobTriggerAttribute : Attribute
    {
        public BlobTriggerAttribute(string blobPath) { BlobPath = blobPath; }
        public string BlobPath { get; private set; }
        public string Connection { get; set; }
    }

    [AttributeUsage(AttributeTargets.Parameter)]
    public sealed class QueueTriggerAttribute : Attribute
    {
        public QueueTriggerAttribute(string queueName) { QueueName = queueName; }
        public string QueueName { get; private set; }
        public string Connection { get; set; }
    }

    public class ExecutionContext
    {
        public Guid InvocationId { get; set; }
        public string FunctionName { get; set; }
        public string FunctionDirectory { get; set; }
        public string FunctionAppDirectory { get; set; }
    }
}

namespace Microsoft.Azure.WebJobs.Extensions.Timers
{
    public class ScheduleStatus
    {
        public DateTime Last { get; set; }
        public DateTime Next { get; set; }
        public DateTime LastUpdated { get; set; }
    }
}

namespace Microsoft.Azure.WebJobs
{
    using Microsoft.Azure.WebJobs.Extensions.Timers;

    public class TimerInfo
    {
        public TimerInfo() { }
        public ScheduleStatus ScheduleStatus { get; set; }
        public bool IsPastDue { get; set; }
    }
}

namespace Microsoft.AspNetCore.Http
{
    using Microsoft.Extensions.Primitives;

    public interface IQueryCollection : IEnumerable<KeyValuePair<string, StringValues>>
    {
        StringValues this[string key] { get; }
        int Count { get; }
        ICollection<string> Keys { get; }
        bool ContainsKey(string key);
        bool TryGetValue(string key, out StringValues value);
    }

    public interface IHeaderDictionary : IDictionary<string, StringValues>
    {
        long? ContentLength { get; set; }
    }

    /// Case-insensitive; a missing name reads as StringValues.Empty, as in ASP.NET Core.
    public class HeaderDictionary : Dictionary<string, StringValues>, IHeaderDictionary
    {
        public HeaderDictionary() : base(StringComparer.OrdinalIgnoreCase) { }
        public new StringValues this[string key]
        {
            get { StringValues v; return TryGetValue(key, out v) ? v : StringValues.Empty; }
            set { base[key] = value; }
        }
        StringValues IDictionary<string, StringValues>.this[string key]
        {
            get { return this[key]; }
            set { this[key] = value; }
        }
        public long? ContentLength
        {
            get { long n; return long.TryParse(this["Content-Length"], out n) ? n : (long?)null; }
            set { if (value.HasValue) this["Content-Length"] = value.Value.ToString(); else Remove("Content-Length"); }
        }
    }

    public class QueryCollection : IQueryCollection
    {
        readonly Dictionary<string, StringValues> store = new Dictionary<string, StringValues>(StringComparer.OrdinalIgnoreCase);
        public QueryCollection() { }
        public QueryCollection(Dictionary<string, StringValues> values) { foreach (var kv in values) store[kv.Key] = kv.Value; }
        public StringValues this[string key] { get { StringValues v; return store.TryGetValue(key, out v) ? v : StringValues.Empty; } }
        public int Count { get { return store.Count; } }
        public ICollection<string> Keys { get { return store.Keys; } }
        public bool ContainsKey(string key) { return store.ContainsKey(key); }
        public bool TryGetValue(string key, out StringValues value) { return store.TryGetValue(key, out value); }
        public IEnumerator<KeyValuePair<string, StringValues>> GetEnumerator() { return store.GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }
    }

    public struct PathString
    {
        public PathString(string value) { Value = value; }
        public string Value { get; private set; }
        public bool HasValue { get { return !string.IsNullOrEmpty(Value); } }
        public override string ToString() { return Value ?? ""; }
        public static implicit operator string(PathString p) { return p.ToString(); }
        public static implicit operator PathString(string s) { return new PathString(s); }
    }

    public struct QueryString
    {
        public QueryString(string value) { Value = value; }
        public string Value { get; private set; }
        public bool HasValue { get { return !string.IsNullOrEmpty(Value); } }
        public override string ToString() { return Value ?? ""; }
    }

    public struct HostString
    {
        public HostString(string value) { Value = value; }
        public string Value { get; private set; }
        public bool HasValue { get { return !string.IsNullOrEmpty(Value); } }
        public string Host { get { var v = Value ?? ""; int i = v.LastIndexOf(':'); return i > 0 && v.IndexOf(']') < i ? v.Substring(0, i) : v; } }
        public int? Port { get { var v = Value ?? ""; int i = v.LastIndexOf(':'); int p; return i > 0 && int.TryParse(v.Substring(i + 1), out p) ? p : (int?)null; } }
        public override string ToString() { return Value ?? ""; }
    }

    public interface IRequestCookieCollection : IEnumerable<KeyValuePair<string, string>>
    {
        string this[string key] { get; }
        int Count { get; }
        bool ContainsKey(string key);
    }

    public abstract class HttpRequest
    {
        public abstract string Method { get; set; }
        public abstract string Scheme { get; set; }
        public abstract bool IsHttps { get; set; }
        public abstract HostString Host { get; set; }
        public abstract PathString PathBase { get; set; }
        public abstract PathString Path { get; set; }
        public abstract QueryString QueryString { get; set; }
        public abstract IQueryCollection Query { get; set; }
        public abstract string Protocol { get; set; }
        public abstract IHeaderDictionary Headers { get; }
        public abstract IRequestCookieCollection Cookies { get; set; }
        public abstract long? ContentLength { get; set; }
        public abstract string ContentType { get; set; }
        public abstract Stream Body { get; set; }
        public abstract bool HasFormContentType { get; }
    }

    /// What Microsoft.Azure.WebJobs.Extensions.Http adds to HttpRequest, and System.Net.Http.Json's
    /// ReadFromJsonAsync (here on Json.NET).
    public static class HttpRequestExtensions
    {
        public static async Task<string> ReadAsStringAsync(this HttpRequest request, Encoding encoding = null)
        {
            if (request.Body.CanSeek) request.Body.Position = 0;
            using (var reader = new StreamReader(request.Body, encoding ?? Encoding.UTF8, true, 4096, true))
                return await reader.ReadToEndAsync();
        }

        public static async Task<T> ReadFromJsonAsync<T>(this HttpRequest request, CancellationToken cancellationToken = default(CancellationToken))
        {
            string text = await ReadAsStringAsync(request);
            return Newtonsoft.Json.JsonConvert.DeserializeObject<T>(text);
        }

        public static bool HasJsonContentType(this HttpRequest request)
        {
            var ct = request.ContentType ?? "";
            return ct.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) || ct.Contains("+json");
        }
    }
}

namespace Microsoft.AspNetCore.Mvc
{
    public interface IActionResult { }

    public abstract class ActionResult : IActionResult { }

    public class StatusCodeResult : ActionResult
    {
        public StatusCodeResult(int statusCode) { StatusCode = statusCode; }
        public int StatusCode { get; private set; }
    }

    public class OkResult : StatusCodeResult { public OkResult() : base(200) { } }
    public class NoContentResult : StatusCodeResult { public NoContentResult() : base(204) { } }
    public class BadRequestResult : StatusCodeResult { public BadRequestResult() : base(400) { } }
    public class UnauthorizedResult : StatusCodeResult { public UnauthorizedResult() : base(401) { } }
    public class NotFoundResult : StatusCodeResult { public NotFoundResult() : base(404) { } }
    public class ConflictResult : StatusCodeResult { public ConflictResult() : base(409) { } }
    public class UnprocessableEntityResult : StatusCodeResult { public UnprocessableEntityResult() : base(422) { } }
    public class InternalServerErrorResult : StatusCodeResult { public InternalServerErrorResult() : base(500) { } }

    public class ObjectResult : ActionResult
    {
        public ObjectResult(object value) { Value = value; }
        public object Value { get; set; }
        public int? StatusCode { get; set; }
        public string ContentType { get; set; }
    }

    public class OkObjectResult : ObjectResult { public OkObjectResult(object value) : base(value) { StatusCode = 200; } }
    public class CreatedResult : ObjectResult
    {
        public CreatedResult(string location, object value) : base(value) { Location = location; StatusCode = 201; }
        public string Location { get; set; }
    }
    public class AcceptedResult : ObjectResult { public AcceptedResult() : base(null) { StatusCode = 202; } public AcceptedResult(string location, object value) : base(value) { Location = location; StatusCode = 202; } public string Location { get; set; } }
    public class BadRequestObjectResult : ObjectResult { public BadRequestObjectResult(object error) : base(error) { StatusCode = 400; } }
    public class UnauthorizedObjectResult : ObjectResult { public UnauthorizedObjectResult(object value) : base(value) { StatusCode = 401; } }
    public class NotFoundObjectResult : ObjectResult { public NotFoundObjectResult(object value) : base(value) { StatusCode = 404; } }
    public class ConflictObjectResult : ObjectResult { public ConflictObjectResult(object error) : base(error) { StatusCode = 409; } }
    public class UnprocessableEntityObjectResult : ObjectResult { public UnprocessableEntityObjectResult(object error) : base(error) { StatusCode = 422; } }

    public class ContentResult : ActionResult
    {
        public string Content { get; set; }
        public string ContentType { get; set; }
        public int? StatusCode { get; set; }
    }

    public class JsonResult : ActionResult
    {
        public JsonResult(object value) { Value = value; }
        public JsonResult(object value, object serializerSettings) { Value = value; SerializerSettings = serializerSettings; }
        public object Value { get; set; }
        public string ContentType { get; set; }
        public object SerializerSettings { get; set; }
        public int? StatusCode { get; set; }
    }

    public class RedirectResult : ActionResult
    {
        public RedirectResult(string url) : this(url, false) { }
        public RedirectResult(string url, bool permanent) { Url = url; Permanent = permanent; }
        public string Url { get; set; }
        public bool Permanent { get; set; }
    }

    public class FileContentResult : ActionResult
    {
        public FileContentResult(byte[] fileContents, string contentType) { FileContents = fileContents; ContentType = contentType; }
        public byte[] FileContents { get; set; }
        public string ContentType { get; set; }
    }
}
