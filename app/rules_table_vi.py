"""Vietnamese texts (ANALYSIS_LANGUAGE=vi) of app/rules_table.py's playbooks: the same knowledge,
keyed by the English table's names; tests/test_language.py checks that every entry there has one
here, with the same number of action items and the same placeholders. Vietnamese does not inflect
for number, so these texts need no `{singular|plural}` forms."""

from __future__ import annotations

from app.rules_table import Playbook

ALERT_PLAYBOOKS: dict[str, Playbook] = {
    "APIDown": Playbook(
        diagnosis="API của {exchanges} không phản hồi health check: sàn đang sập hoặc bảo "
        "trì, hoặc đường kết nối từ mình tới sàn (DNS, egress proxy, mạng, TLS) bị hỏng.",
        impact="Không có dữ liệu thị trường và không đặt được lệnh qua {exchanges}: không điều "
        "chỉnh được vị thế đang mở, các chiến lược phụ thuộc vào sàn đang chạy mù.",
        actions=(
            "Xem trang trạng thái và kênh thông báo của sàn để biết có bảo trì hay sự cố không.",
            "Từ máy giám sát, curl endpoint ping của sàn để tách lỗi mạng của mình khỏi lỗi của "
            "sàn (DNS, TLS, egress proxy).",
            "Nếu chỉ một vùng hoặc một host lỗi, chuyển sang egress hoặc domain API còn tốt.",
            "Tạm dừng hoặc giảm các chiến lược phụ thuộc vào {exchanges}; kiểm tra tay các vị "
            "thế đang mở.",
        ),
        rollback="Hoàn tác thay đổi gần nhất về mạng, proxy, DNS hoặc endpoint API; chuyển "
        "traffic về endpoint tốt gần nhất.",
        recovery="Sàn bảo trì: theo thông báo (thường 30-120 phút); lỗi mạng: 5-15 phút sau khi "
        "failover.",
    ),
    "APILatencyHigh": Playbook(
        diagnosis="Request tới {exchanges} chậm: sàn quá tải (thị trường biến động mạnh), đường "
        "mạng suy giảm, hoặc chính client của mình bị nghẽn (connection pool, CPU, GC).",
        impact="Lệnh đặt và lệnh hủy tới muộn; giá chào bị cũ và trượt giá tăng.",
        actions=(
            "So sánh độ trễ giữa các sàn: một sàn chậm là do sàn, tất cả cùng chậm là do mình.",
            "Kiểm tra connection pool, CPU và độ trễ event loop của client trên máy giao dịch.",
            "Kiểm tra độ trễ mạng và tỉ lệ mất gói tới các endpoint của sàn.",
            "Nới rộng giá chào hoặc giảm tần suất đặt lệnh cho tới khi độ trễ về dưới ngưỡng.",
        ),
        rollback="Rollback bản deploy hoặc thay đổi cấu hình gần nhất của API client nếu độ trễ "
        "tăng ngay sau đó.",
        recovery="Thường 5-30 phút; độ trễ do biến động thì theo diễn biến thị trường.",
    ),
    "RateLimitExhausted": Playbook(
        diagnosis="Hạn mức request weight của {exchanges} đã gần hết hoặc hết hẳn: do retry dồn "
        "dập, một chiến lược mới hoặc chạy sai, hoặc polling lẽ ra phải dùng websocket stream.",
        impact="Các request tiếp theo nhận 429 và nếu bỏ qua sẽ bị cấm IP (418) từ vài phút đến "
        "vài ngày.",
        actions=(
            "Tìm nơi đang tiêu weight: số request theo từng endpoint trong 15 phút gần nhất.",
            "Tuân thủ Retry-After và dừng các vòng retry; thêm backoff có jitter.",
            "Chuyển việc polling giá và trạng thái lệnh sang websocket stream.",
            "Chia tải qua nhiều API key hoặc IP chỉ khi điều khoản của sàn cho phép.",
        ),
        rollback="Tắt hoặc rollback chiến lược hay bản deploy đã làm tăng tần suất request.",
        recovery="Cửa sổ weight được reset trong khoảng một phút khi tần suất giảm; thời gian bị cấm IP "
        "kéo dài từ 2 phút đến 3 ngày.",
    ),
    "APIErrorRateHigh": Playbook(
        diagnosis="Tỉ lệ request lỗi tới {exchanges} cao: request bị từ chối (chữ ký, dấu thời "
        "gian, quyền, tham số) hoặc lỗi 5xx từ phía sàn.",
        impact="Lệnh và truy vấn tài khoản thất bại; vị thế có thể lệch với những gì chiến lược "
        "đang tin.",
        actions=(
            "Phân tách lỗi theo HTTP status và mã lỗi của sàn.",
            "Lỗi 4xx: kiểm tra API key, quyền và IP allow-list của key, và đồng hồ (NTP).",
            "Lỗi 5xx: xem trang trạng thái của sàn; chỉ retry các request đọc (idempotent), kèm backoff.",
            "Đối soát lệnh đang mở và vị thế với sàn sau khi hết lỗi.",
        ),
        rollback="Rollback bản phát hành client hoặc lần xoay vòng API key gần nhất nếu lỗi bắt "
        "đầu từ đó.",
        recovery="Nguyên nhân phía client: vài phút sau khi sửa; phía sàn: theo thông báo.",
    ),
}

# Keyed by the English `Signature.name` of rules_table.SIGNATURES; the value is the signature's
# name in Vietnamese (it completes "Độ tin cậy: cao (... khớp với <name>)") and its playbook.
SIGNATURES: dict[str, tuple[str, Playbook]] = {
    "a timestamp outside recvWindow (Binance -1021, OKX 50102, Bybit 10002)": (
        "dấu thời gian nằm ngoài recvWindow (Binance -1021, OKX 50102, Bybit 10002)",
        Playbook(
            diagnosis="Request tới {exchanges} bị từ chối vì dấu thời gian nằm ngoài cửa sổ "
            "nhận (Binance -1021, OKX 50102, Bybit 10002): đồng hồ của máy bị lệch, hoặc "
            "request phải chờ quá lâu trước khi được gửi đi.",
            impact="Các request có ký (đặt lệnh, hủy lệnh, tài khoản) thất bại trong khi dữ "
            "liệu công khai vẫn chạy.",
            actions=(
                "Đồng bộ đồng hồ: kiểm tra `chronyc tracking` hoặc `timedatectl` và khởi động lại "
                "NTP.",
                "So sánh giờ máy với endpoint server time của sàn.",
                "Tăng recvWindow (ví dụ từ 5000 lên 10000 ms) trong lúc sửa đồng hồ.",
            ),
            rollback="Khôi phục cấu hình NTP hoặc cấu hình máy trước đó nếu vừa thay đổi.",
            recovery="Vài phút sau khi đồng hồ được đồng bộ.",
        ),
    ),
    "IP ban (HTTP 418)": (
        "bị cấm IP (HTTP 418)",
        Playbook(
            diagnosis="{exchanges} đã cấm IP này (HTTP 418) sau khi mình liên tục vượt rate limit.",
            impact="Mọi request từ IP này thất bại cho tới khi hết thời gian bị cấm.",
            actions=(
                "Dừng ngay mọi traffic từ IP bị cấm: request thêm sẽ kéo dài thời gian bị cấm.",
                "Đọc thời điểm hết cấm trong nội dung lỗi hoặc Retry-After.",
                "Chỉ chuyển sang IP khác được phép sau khi đã sửa tần suất request.",
            ),
            rollback="Rollback thay đổi đã làm tăng tần suất request.",
            recovery="Theo sàn quy định: từ 2 phút đến 3 ngày, tăng dần nếu tái phạm.",
        ),
    ),
    "order-rate limit (Binance -1015)": (
        "giới hạn tần suất đặt lệnh (Binance -1015)",
        Playbook(
            diagnosis="{exchanges} từ chối lệnh mới vì giới hạn tần suất đặt lệnh của tài khoản "
            "(Binance -1015: số lệnh mỗi 10 giây và mỗi ngày), không phải request weight của "
            "IP: một chiến lược đang đặt hoặc sửa lệnh nhanh hơn mức tài khoản được phép.",
            impact="Lệnh mới bị từ chối cho tới khi cửa sổ được reset; lệnh hủy vẫn chạy.",
            actions=(
                "Tìm chiến lược có số lệnh tăng vọt; tạm dừng hoặc giảm tần suất đặt lệnh của nó.",
                "Thay vòng hủy-rồi-đặt-lại bằng lệnh sửa (amend) ở những sàn hỗ trợ.",
                "Kiểm tra hạn mức của tài khoản qua endpoint rateLimit/order của sàn.",
            ),
            rollback="Rollback thay đổi chiến lược hoặc tham số đã làm tăng tần suất đặt lệnh.",
            recovery="Vài giây với cửa sổ 10 giây; số lệnh trong ngày được reset lúc 00:00 UTC.",
        ),
    ),
    "rate limit (HTTP 429 / -1003 / 50011 / 10006)": (
        "rate limit (HTTP 429 / -1003 / 50011 / 10006)",
        Playbook(
            diagnosis="{exchanges} đang giới hạn tần suất của mình (HTTP 429, Binance -1003, OKX "
            "50011, Bybit 10006/10018): tần suất hoặc weight request vượt hạn mức của sàn, "
            "thường do retry dồn dập hoặc polling lẽ ra phải dùng stream.",
            impact="Request bị từ chối; tiếp tục sẽ có nguy cơ bị cấm IP (418).",
            actions=(
                "Backoff ngay và tuân thủ Retry-After.",
                "Giảm weight: dùng endpoint gộp (batch), websocket stream thay cho polling.",
            ),
            rollback="Rollback chiến lược hoặc bản deploy đã làm tăng tần suất request.",
            recovery="Khoảng một phút sau khi tần suất request giảm.",
        ),
    ),
    "IP not on the key's allow-list (OKX 50110 / Bybit 10010)": (
        "IP không có trong allow-list của key (OKX 50110 / Bybit 10010)",
        Playbook(
            diagnosis="{exchanges} từ chối request vì IP egress gửi đi không nằm trong IP "
            "allow-list của API key: egress đã đổi (NAT gateway, proxy, máy mới), hoặc "
            "allow-list của key vừa bị sửa.",
            impact="Mọi request có ký từ máy này thất bại; dữ liệu thị trường công khai vẫn chạy.",
            actions=(
                "Tìm IP egress hiện tại (curl ifconfig.me từ máy giao dịch).",
                "So sánh với IP allow-list của key trong trang quản lý API của sàn.",
                "Thêm IP mới, hoặc định tuyến traffic về lại egress được phép.",
            ),
            rollback="Chuyển traffic về IP egress hoặc NAT gateway trước đó.",
            recovery="Vài phút sau khi sửa allow-list hoặc egress.",
        ),
    ),
    "bad request signature (Binance -1022 / OKX 50113 / Bybit 10004)": (
        "chữ ký request không hợp lệ (Binance -1022 / OKX 50113 / Bybit 10004)",
        Playbook(
            diagnosis="{exchanges} từ chối chữ ký của request: API secret đang dùng không thuộc "
            "về key (xoay vòng key làm dở, thừa khoảng trắng), hoặc chuỗi được ký khác với chuỗi "
            "được gửi (thứ tự tham số, URL encoding, body hay query).",
            impact="Mọi request có ký thất bại: không đặt, hủy lệnh hay xem tài khoản được.",
            actions=(
                "Kiểm tra key và secret thuộc cùng một cặp (so fingerprint của key).",
                "Tìm khoảng trắng hoặc xuống dòng thừa trong secret khi nạp từ secret store.",
                "Log đúng chuỗi được ký (không bao giờ log secret) và so với chuỗi được gửi.",
            ),
            rollback="Khôi phục cặp key trước đó hoặc bản client trước nếu lỗi bắt đầu từ đó.",
            recovery="Vài phút sau khi deploy đúng secret hoặc đúng code ký.",
        ),
    ),
    "invalid API key (401 / -2015)": (
        "API key không hợp lệ (401 / -2015)",
        Playbook(
            diagnosis="{exchanges} từ chối API key của mình (401, Binance -2015, OKX 50111, Bybit "
            "10003): key sai, hết hạn hoặc đã bị thu hồi, thiếu quyền đang dùng, hoặc IP egress "
            "không có trong allow-list của key.",
            impact="Request có ký thất bại: không đặt, hủy lệnh hay xem tài khoản được.",
            actions=(
                "Kiểm tra service đã nạp key nào (fingerprint, không phải secret) và key còn hoạt "
                "động không.",
                "Kiểm tra quyền của key (spot, futures, giao dịch) trong trang quản trị của sàn.",
                "Đối chiếu giới hạn IP của key với IP egress đang dùng.",
            ),
            rollback="Khôi phục key trước đó từ secret store nếu vừa xoay vòng key.",
            recovery="Vài phút sau khi deploy một key hợp lệ.",
        ),
    ),
    "forbidden (HTTP 403)": (
        "bị từ chối truy cập (HTTP 403)",
        Playbook(
            diagnosis="{exchanges} trả về 403 Forbidden: IP egress không có trong allow-list của "
            "key, key thiếu quyền, hoặc bị WAF hay chặn theo khu vực.",
            impact="Các endpoint bị ảnh hưởng thất bại với mọi request từ máy này.",
            actions=(
                "So sánh IP egress hiện tại với IP allow-list của API key.",
                "Kiểm tra quyền của key với endpoint đang lỗi.",
                "Kiểm tra WAF hoặc chặn địa lý: body và header của response sẽ nêu rõ.",
            ),
            rollback="Chuyển traffic về IP egress hoặc proxy trước đó.",
            recovery="Vài phút sau khi sửa allow-list hoặc egress.",
        ),
    ),
    "market-data sequence gap": (
        "đứt đoạn sequence của dữ liệu thị trường",
        Playbook(
            diagnosis="Order book cục bộ của {exchanges} bị thiếu cập nhật (đứt đoạn sequence "
            "trong depth stream): message bị rơi do kết nối lại hoặc consumer xử lý chậm, nên "
            "book không còn khớp với sàn cho tới khi dựng lại từ snapshot REST.",
            impact="Giá và độ sâu mà chiến lược nhìn thấy bị sai cho tới khi book được dựng lại.",
            actions=(
                "Dựng lại book: lấy snapshot depth qua REST, rồi áp các cập nhật đã đệm sau "
                "lastUpdateId của nó.",
                "Kiểm tra độ trễ và CPU của consumer: consumer đọc chậm khiến sàn bỏ message.",
                "Tạm dừng chào giá trên market bị ảnh hưởng cho tới khi book được dựng lại.",
            ),
            rollback="Rollback client dữ liệu thị trường nếu đứt đoạn bắt đầu từ một bản phát "
            "hành.",
            recovery="Vài giây sau khi book được dựng lại từ snapshot.",
        ),
    ),
    "websocket heartbeat lost": (
        "mất heartbeat của websocket",
        Playbook(
            diagnosis="Kết nối websocket tới {exchanges} ở trạng thái half-open (chết ngầm): "
            "heartbeat (ping/pong) dừng, socket trông vẫn mở nhưng không mang dữ liệu; idle "
            "timeout của NAT hoặc load balancer, hoặc client không còn trả lời ping, đã âm thầm "
            "cắt nó.",
            impact="Dữ liệu thị trường và cập nhật lệnh từ stream dừng trong khi REST vẫn chạy.",
            actions=(
                "Kết nối lại và subscribe lại; coi một lần mất pong là kết nối đã chết.",
                "Gửi ping thường xuyên hơn idle timeout ngắn nhất trên đường đi (NAT, proxy).",
                "Kiểm tra độ trễ event loop của client: event loop bị chặn sẽ lỡ ping.",
            ),
            rollback="Hoàn tác các thay đổi gần đây của proxy, NAT hoặc websocket client.",
            recovery="Vài giây sau khi kết nối lại.",
        ),
    ),
    "stale market data": (
        "dữ liệu thị trường bị cũ",
        Playbook(
            diagnosis="Stream dữ liệu thị trường từ {exchanges} im lặng trong khi REST API vẫn "
            "trả lời: subscription websocket đã bị ngắt (sàn đóng kết nối mỗi 24 giờ và khi vượt "
            "giới hạn subscription) hoặc consumer của mình bị treo.",
            impact="Chiến lược giao dịch trên giá cũ; giá chào có thể bị khớp bất lợi.",
            actions=(
                "Kiểm tra thời điểm message cuối của stream, tiến trình và độ trễ của consumer.",
                "Kết nối lại và subscribe lại; xác nhận đã nhận được ack của subscription.",
                "Tạm dừng chào giá trên các market bị ảnh hưởng cho tới khi có dữ liệu mới.",
            ),
            rollback="Rollback client dữ liệu thị trường nếu sự im lặng bắt đầu từ một bản phát "
            "hành.",
            recovery="Vài giây sau khi subscribe lại; lâu hơn nếu stream của sàn đang sập.",
        ),
    ),
    "TLS interception or missing CA": (
        "TLS bị chặn bắt hoặc thiếu CA",
        Playbook(
            diagnosis="Chứng chỉ TLS nhận được cho {exchanges} không do một CA tin cậy ký: có "
            "thứ gì đó trên đường đi đang chặn bắt TLS (proxy doanh nghiệp, antivirus, captive "
            "portal) hoặc bộ CA của máy bị thiếu hay đã cũ.",
            impact="Mọi request HTTPS tới sàn thất bại, hoặc tệ hơn, đi qua một thiết bị trung "
            "gian.",
            actions=(
                "Xem chuỗi chứng chỉ từ máy: openssl s_client -connect <api host>:443 -showcerts.",
                "Nếu bên cấp là proxy hoặc thiết bị bảo mật, loại trừ các host của sàn khỏi việc "
                "kiểm tra TLS.",
                "Cập nhật bộ CA (ca-certificates) trên máy hoặc trong image.",
            ),
            rollback="Hoàn tác thay đổi proxy, firewall hoặc base image đã mang chuỗi chứng chỉ "
            "mới tới.",
            recovery="Vài phút sau khi loại trừ khỏi kiểm tra TLS hoặc cập nhật CA.",
        ),
    ),
    "TLS certificate not valid now": (
        "chứng chỉ TLS không hợp lệ vào lúc này",
        Playbook(
            diagnosis="TLS tới {exchanges} lỗi vì thời hạn hiệu lực của chứng chỉ: chứng chỉ của "
            "sàn thật sự hết hạn (hiếm), hoặc thường gặp hơn, đồng hồ máy của mình bị sai nên "
            "chứng chỉ hợp lệ trông như đã hết hạn hoặc chưa có hiệu lực.",
            impact="Mọi request HTTPS từ máy này thất bại.",
            actions=(
                "Kiểm tra đồng hồ máy: timedatectl, chronyc tracking.",
                "Kiểm tra ngày hiệu lực của chứng chỉ sàn đang dùng: openssl s_client -connect "
                "<api host>:443 | openssl x509 -noout -dates.",
            ),
            rollback="Khôi phục cấu hình NTP nếu vừa thay đổi.",
            recovery="Vài phút sau khi đồng hồ đúng; nếu không thì chờ sàn tự sửa.",
        ),
    ),
    "API key expiring": (
        "API key sắp hết hạn",
        Playbook(
            diagnosis="Một API key của {exchanges} sắp hết hạn (sàn cho key hết hạn theo chính "
            "sách, Bybit với key không gắn IP là sau 90 ngày): hãy xoay vòng key trước thời "
            "điểm đó, nếu không mọi request có ký sẽ thất bại khi key hết hạn.",
            impact="Chưa có; khi hết hạn sẽ không đặt, hủy lệnh hay xem tài khoản được.",
            actions=(
                "Tạo key thay thế với cùng quyền và cùng IP allow-list.",
                "Đưa key mới vào secret store và khởi động lại các client đang giữ key cũ.",
                "Gắn key với các IP egress để key không hết hạn lần nữa.",
            ),
            rollback="Giữ key cũ cho tới khi key mới chạy ổn, sau đó mới thu hồi.",
            recovery="Vài phút để xoay vòng; hãy lên kế hoạch trước ngày hết hạn.",
        ),
    ),
    "DNS resolution failure": (
        "lỗi phân giải DNS",
        Playbook(
            diagnosis="Phân giải DNS hostname API của {exchanges} thất bại ở phía mình: resolver "
            "của mình sập hoặc không tới được, hoặc truy vấn bị từ chối; bản thân sàn có thể vẫn "
            "ổn.",
            impact="Không request nào bắt đầu được từ các máy dùng resolver đó.",
            actions=(
                "Phân giải host từ máy giám sát: dig api.<exchange>.com, rồi thử với resolver "
                "khác (dig @1.1.1.1).",
                "Kiểm tra resolver được nêu trong lỗi (địa chỉ :53) và /etc/resolv.conf.",
                "Chuyển sang resolver dự phòng nếu resolver chính sập.",
            ),
            rollback="Hoàn tác các thay đổi gần đây về DNS, resolv.conf hoặc DNS của VPC.",
            recovery="Vài phút sau khi dùng được một resolver hoạt động tốt.",
        ),
    ),
    "connection refused": (
        "kết nối bị từ chối",
        Playbook(
            diagnosis="Không có gì đang lắng nghe ở địa chỉ mình kết nối tới cho {exchanges}: một "
            "proxy hoặc gateway cục bộ trên đường đi đang sập (cổng trong lỗi, như 3128 hay "
            "8080, chỉ ra nó), hoặc base URL hay cổng cấu hình bị sai.",
            impact="Mọi request qua địa chỉ đó thất bại ngay lập tức.",
            actions=(
                "Xem lỗi nêu host và cổng nào; đó là sàn, hay proxy của mình?",
                "Khởi động lại hoặc failover proxy; thử một request trực tiếp bỏ qua proxy.",
                "Kiểm tra base URL và thiết lập HTTPS_PROXY xem có thay đổi gần đây không.",
            ),
            rollback="Hoàn tác thay đổi cấu hình proxy hoặc endpoint gần nhất.",
            recovery="Vài phút sau khi proxy hoạt động lại hoặc được bỏ qua.",
        ),
    ),
    "partial outage": (
        "sự cố một phần",
        Playbook(
            diagnosis="Sự cố một phần: một endpoint hoặc market của {exchanges} lỗi trong khi "
            "phần còn lại vẫn trả lời, cho thấy sự cố phía sàn ở riêng dịch vụ đó (dữ liệu thị "
            "trường, matching engine) hoặc market bị tạm ngưng, không phải do mạng hay key của "
            "mình.",
            impact="Chỉ những gì phụ thuộc vào endpoint hoặc market đang lỗi bị ảnh hưởng.",
            actions=(
                "Xem trang trạng thái và thông báo của sàn về dịch vụ hoặc market đó.",
                "Chuyển sang nguồn khác cho dữ liệu đó (websocket stream, endpoint khác).",
                "Chỉ tạm dừng chiến lược trên market bị ảnh hưởng; giữ phần còn lại chạy.",
            ),
            rollback="Không cần ở phía mình, trừ khi một thay đổi client vừa bắt đầu dùng endpoint "
            "đang lỗi.",
            recovery="Theo thông báo của sàn; sự cố ở một dịch vụ thường kéo dài 5-30 phút.",
        ),
    ),
    "exchange maintenance or retired endpoint": (
        "sàn bảo trì hoặc endpoint đã ngừng",
        Playbook(
            diagnosis="{exchanges} đang bảo trì hoặc đã ngừng endpoint này (Binance -1016): "
            "request không sai, chỉ là dịch vụ phía sau không còn ở đó.",
            impact="Endpoint bị ảnh hưởng thất bại cho tới khi hết bảo trì hoặc client chuyển "
            "sang endpoint mới.",
            actions=(
                "Xem thông báo của sàn về lịch bảo trì hoặc việc ngừng hỗ trợ endpoint.",
                "Nếu endpoint đã bị ngừng, chuyển sang endpoint thay thế.",
            ),
            rollback="Không cần ở phía mình; chỉ ghim endpoint cũ nếu nó vẫn còn chạy.",
            recovery="Bảo trì: theo thông báo; endpoint đã ngừng: sau khi chuyển đổi.",
        ),
    ),
    "exchange-side error": (
        "lỗi phía sàn",
        Playbook(
            diagnosis="Hệ thống của chính {exchanges} đang lỗi hoặc quá tải (phía sàn: internal "
            "error, system busy), không phải sàn từ chối request của mình: thường gặp khi thị "
            "trường biến động mạnh và khi có sự cố.",
            impact="Request thất bại ngẫu nhiên; trạng thái của một số lệnh có thể không rõ.",
            actions=(
                "Xem trang trạng thái và thông báo của sàn.",
                "Retry các request đọc kèm backoff; không bao giờ retry lệnh đặt một cách mù quáng: "
                "hãy truy vấn trạng thái trước.",
                "Đối soát lệnh đang mở và vị thế khi hết lỗi.",
            ),
            rollback="Không cần ở phía mình.",
            recovery="Thường vài phút; theo thông báo nếu sàn công bố sự cố.",
        ),
    ),
    "connection reset or timeout": (
        "kết nối bị reset hoặc timeout",
        Playbook(
            diagnosis="Kết nối tới {exchanges} bị ngắt hoặc treo: mất gói hoặc một thiết bị "
            "trung gian (NAT, firewall, load balancer) trên đường mạng reset chúng, hoặc edge "
            "của sàn quá tải và trả lời chậm.",
            impact="Request thất bại hoặc treo; lệnh có thể đã được đặt mà mình không thấy phản hồi.",
            actions=(
                "So sánh với các sàn khác: tất cả cùng bị là do mạng của mình, một sàn là do sàn.",
                "Chạy mtr tới host API của sàn từ máy giao dịch để tìm chỗ mất gói.",
                "Kiểm tra giới hạn kết nối và idle timeout của NAT gateway phía mình.",
                "Truy vấn trạng thái các lệnh đã đặt trong lúc lỗi trước khi retry chúng.",
            ),
            rollback="Hoàn tác các thay đổi gần đây về mạng, NAT hoặc firewall.",
            recovery="Vài phút với lỗi mạng; theo thông báo nếu là sự cố của sàn.",
        ),
    ),
    "CORS or proxy failure": (
        "lỗi CORS hoặc proxy",
        Playbook(
            diagnosis="Request tới {exchanges} thất bại ở lớp proxy hoặc CORS trước khi tới sàn "
            "(proxy sập hoặc cấu hình sai, 407, thiếu header CORS).",
            impact="Mọi thứ đi qua proxy đó đều thất bại.",
            actions=(
                "Kiểm tra tình trạng và log của proxy; thử một request trực tiếp bỏ qua proxy.",
                "Với client chạy trên trình duyệt, kiểm tra header CORS mà proxy trả về.",
            ),
            rollback="Hoàn tác thay đổi cấu hình proxy gần nhất.",
            recovery="Vài phút sau khi proxy được sửa hoặc bỏ qua.",
        ),
    ),
}

ALL_AT_ONCE = Playbook(
    diagnosis="API của {exchanges} lỗi cùng một lúc. Các sàn độc lập hiếm khi lỗi cùng nhau, "
    "nên nguyên nhân nhiều khả năng nằm ở phía mình: egress (NAT gateway, proxy, firewall), "
    "DNS resolver hoặc mạng của máy đang probe chúng.",
    impact="Mọi việc máy này làm trên tất cả các sàn đều bị ảnh hưởng.",
    actions=(
        "Từ máy probe, curl một trang web không liên quan: nếu cũng lỗi, egress của mình đã sập.",
        "Kiểm tra NAT gateway, proxy và firewall xem có thay đổi gần đây hay bị quá tải không.",
        "Phân giải host của các sàn bằng dig với một resolver khác.",
    ),
    rollback="Hoàn tác thay đổi gần nhất về mạng, proxy, firewall hoặc DNS.",
    recovery="Vài phút sau khi egress của mình được khôi phục.",
)

GENERIC = Playbook(
    diagnosis="",
    impact="Xem phần mô tả của cảnh báo; mức độ {severity}.",
    actions=(
        "Mở link biểu đồ và xem chỉ số vượt ngưỡng từ lúc nào.",
        "Kiểm tra các lần deploy và thay đổi cấu hình ngay trước khi cảnh báo bắt đầu.",
    ),
    rollback="Rollback thay đổi gần nhất của dịch vụ bị ảnh hưởng nếu cảnh báo bắt đầu từ đó.",
    recovery="Chưa rõ: tùy nguyên nhân; đánh giá lại sau các việc cần làm đầu tiên.",
)
