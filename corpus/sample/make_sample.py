"""Write the bundled sample ``sample.warc.wet.gz``: a Common-Crawl-shaped WET file of web pages
written for the zhtw project, so the corpus stage can be tried (and tested end to end) in seconds.

All text below was written for this project; nothing is copied from the shared data or the web.
Hosts end in ``.example`` (reserved, never real sites). The file holds one ``warcinfo`` record
and one ``conversion`` record per page, with the headers a real CC WET record carries
(WARC-Type, WARC-Target-URI, WARC-Date, WARC-Record-ID, WARC-Refers-To, WARC-Block-Digest,
WARC-Identified-Content-Language, Content-Type: text/plain, Content-Length), every record its
own gzip member, like CC.

Pages per category (``CATEGORY_COUNTS``; 320 in all), in shuffled order:

==================  ====  =====================================================================
zh_tw_article        120  Taiwan Traditional prose on nine topics (local news, technology,
                          travel, food, government notices, education, health, environment,
                          culture), each page drawn from hand-written sentences with varied
                          names, places and numbers plus composed commentary, so pages differ
                          (pairwise character 5-gram Jaccard < 0.35 by construction: MinHash
                          dedup should not pair them)
zh_tw_boilerplate     40  the same kind of articles wrapped in site chrome: navigation menus
                          (首頁 | 關於我們 | 聯絡我們 ...), cookie banners, share bars,
                          版權所有 © footers; five sites, so the chrome repeats across pages
zh_tw_duixiang         2  Traditional articles built around 對象 (研究對象, 交往對象 ...): s2twp
                          would turn it into 物件, so these show Traditional text is never s2twp'd
zh_tw_variants         2  Traditional text using OpenCC variant forms (爲 裏 羣 着 衆 峯 啓) that
                          t2tw normalises
zh_cn_article         50  Simplified prose with mainland vocabulary (软件 信息 网络 视频 默认
                          数据库 服务器 内存 打印机 鼠标 ...) that s2twp rewrites for Taiwan
english               25  English pages (technology, travel and food, science, home, books)
mixed_script           4  forum-style pages mixing Traditional and Simplified paragraphs
spam_gambling         20  Simplified gambling keyword-stuffing (博彩 娱乐城 百家乐 开户 ...), as
                          in real Common Crawl
spam_injected          8  Simplified news text with gambling keywords and nonsense injected,
                          the commonest spam shape in real Chinese CC text
spam_adult             6  Simplified adult-video SEO keyword pages (keyword lists only)
near_duplicate        15  copies of zh-TW articles at another URL with one clause rewritten and
                          sometimes a （轉載） note (5-gram Jaccard 0.8-0.97 with the original)
exact_duplicate       10  byte-identical copies of zh-TW articles at another URL
mojibake               4  UTF-8 read as cp1252; UTF-8 read as GBK; every fourth character lost
                          to U+FFFD; Han characters lost to U+FFFD and then read as GBK (锟斤拷)
repetitive             3  a product list repeated, one sentence repeated, a tag cloud
low_han                2  a stock-quote table and a code snippet under a Chinese title
short                  9  near-empty pages (404, 登入, 載入中…, "Loading...")
==================  ====  =====================================================================

Deterministic: a fixed seed, fixed dates and record ids, gzip headers with mtime 0, so rerunning
``python corpus/sample/make_sample.py`` writes a byte-identical file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

SEED = 20240518
MAX_SIMILAR = 0.35  # most 5-gram Jaccard between two pages meant to be distinct
NEAR_DUP_RANGE = (0.8, 0.97)  # 5-gram Jaccard of each near-duplicate with its original
OUTPUT = Path(__file__).with_name("sample.warc.wet.gz")
CRAWL_START = datetime(2024, 5, 17, 23, 31, 22, tzinfo=timezone.utc)

CATEGORY_COUNTS = {
    "zh_tw_article": 120,
    "zh_tw_boilerplate": 40,
    "zh_tw_duixiang": 2,
    "zh_tw_variants": 2,
    "zh_cn_article": 50,
    "english": 25,
    "mixed_script": 4,
    "spam_gambling": 20,
    "spam_injected": 8,
    "spam_adult": 6,
    "near_duplicate": 15,
    "exact_duplicate": 10,
    "mojibake": 4,
    "repetitive": 3,
    "low_han": 2,
    "short": 9,
}


@dataclass
class Page:
    category: str
    url: str
    text: str
    language: str  # WARC-Identified-Content-Language, as CC writes it


# Hand-written word lists and sentence pools, kept one logical group per line.
# fmt: off
# --------------------------------------------------------------------------- slot values

TW_CITIES = ["臺北市", "新北市", "桃園市", "臺中市", "臺南市", "高雄市", "基隆市", "新竹市", "嘉義市", "宜蘭縣",
             "花蓮縣", "臺東縣", "屏東縣", "南投縣", "雲林縣", "彰化縣", "苗栗縣", "澎湖縣", "金門縣"]
TW_DISTRICTS = ["中正區", "大安區", "板橋區", "中壢區", "西屯區", "東區", "鳳山區", "仁愛區", "北區", "羅東鎮",
                "吉安鄉", "卑南鄉", "潮州鎮", "埔里鎮", "斗六市", "鹿港鎮", "竹南鎮", "馬公市", "金城鎮"]
TW_PLACES = ["太魯閣", "阿里山", "日月潭", "合歡山", "墾丁", "九份", "三仙台", "清境農場", "奮起湖", "綠島",
             "蘭嶼", "七星潭", "太平山", "旗津", "鹿港", "安平", "內灣", "集集", "池上", "東眼山"]
TW_FACILITIES = ["排水系統", "人行道", "國民運動中心", "公共圖書館", "停車場", "社會住宅", "自行車道",
                 "轉運站", "長照據點", "親子館"]
TW_COMPANIES = ["宏碩科技", "晶宇電子", "遠川資訊", "新峰半導體", "雲港網路", "光曜通訊", "智林軟體", "鼎泰電腦"]
TW_FRUITS = ["芒果", "鳳梨", "荔枝", "文旦", "芭樂", "草莓", "蓮霧", "釋迦", "百香果", "柳丁"]
TW_CROPS = ["高麗菜", "稻米", "茶葉", "香蕉", "番茄", "蒜頭", "地瓜", "花生", "玉米", "紅豆"]
TW_ROADS = ["中山路", "民生路", "中華路", "建國路", "忠孝東路", "復興北路", "成功路", "自由路", "文化路", "和平路"]
TW_SURNAMES = ["陳", "林", "黃", "張", "李", "王", "吳", "劉", "蔡", "楊", "許", "鄭", "謝", "郭", "洪", "曾"]
TW_GIVEN = ["志明", "淑芬", "家豪", "雅婷", "俊傑", "怡君", "建宏", "佩珊", "冠宇", "欣怡", "宗翰", "詩涵",
            "承恩", "宜蓁", "柏翰", "筱涵"]
TW_ROLES = ["里長", "店家老闆", "社區發展協會理事長", "研究員", "退休教師", "上班族", "家長", "導遊", "農民",
            "主廚", "工程師", "志工", "大學生", "醫師"]
TW_REGS = ["社區公共設施維護補助辦法", "青年創業貸款利息補貼要點", "老舊建築物外牆安全檢查辦法",
           "公有市場攤位租賃管理要點", "低碳運輸補助作業要點", "農業災害救助作業要點"]
TW_LAWS = ["地方制度法", "行政程序法", "建築法", "農業發展條例", "公寓大廈管理條例", "道路交通管理處罰條例"]
TW_MINISTRIES = ["內政部", "經濟部", "交通部", "農業部", "環境部", "衛生福利部"]
TW_DEPTS = ["工務局", "社會局", "交通局", "經濟發展局", "農業處", "環境保護局", "都市發展局"]

CN_CITIES = ["杭州", "成都", "武汉", "南京", "西安", "长沙", "郑州", "青岛", "合肥", "厦门", "昆明", "沈阳"]

# --------------------------------------------------------------------------- zh-TW sentences

TW_TOPICS: dict[str, dict[str, list[str]]] = {
    "news": {
        "titles": ["{city}{facility}改善工程明年動工", "{city}議會審查總預算　議員關注{facility}",
                   "{district}民宅火警　住戶及時逃生", "{city}公布年度施政重點", "{road}拓寬工程今起封閉部分車道",
                   "{city}擴大長照服務據點"],
        "sentences": [
            "{city}政府今天宣布，將投入{n}億元改善{facility}，預計{year}年底前完工。",
            "市府{dept}表示，這項計畫已經過多次公聽會，民眾意見大多集中在交通動線與施工期間的噪音。",
            "{city}議會昨天審查明年度總預算，議員針對{facility}的維護經費提出多項質詢。",
            "地方里長指出，居民等這條道路拓寬工程已經超過十年，希望工程單位能夠如期完成。",
            "交通局提醒，施工期間{road}部分車道將封閉，用路人可改道{road2}或搭乘大眾運輸。",
            "氣象署預報，受東北季風影響，北部及東北部地區明天起氣溫下降，山區可能出現零星降雨。",
            "消防局{month}月{day}日凌晨接獲報案，{district}一處民宅發生火警，所幸屋內{k}名住戶及時逃生，無人受傷。",
            "警方呼籲，近期假冒客服的詐騙電話增加，接到要求操作自動櫃員機的來電，應立即撥打一六五反詐騙專線查證。",
            "衛生局統計，今年截至目前已有{big}人次接種流感疫苗，接種率較去年同期增加{pct}個百分點。",
            "環保局表示，垃圾車將自下個月起調整收運時間，詳細路線可上環保局網站或下載手機應用程式查詢。",
            "這座興建於日治時期的老建築，經過{k}年修復後重新開放，吸引許多民眾前往參觀。",
            "市長在記者會上強調，城市的發展不能只看經濟數字，也要讓每個人都住得安心。",
            "社會局也將擴大長照服務據點，讓長輩在住家附近就能獲得日間照顧與送餐服務。",
            "捷運公司表示，新路線試營運期間每日運量約{big}人次，尖峰時段班距縮短為四分鐘。",
            "有民眾反映{district}的公園遊具老舊，公園處已派員會勘，將於{month}月起分區汰換。",
            "勞工局舉辦的就業博覽會共有{n}家廠商參與，提供超過{big}個職缺。",
            "農曆年前各大市場人潮湧現，攤商表示今年蔬菜價格大致平穩，但部分水果因天候影響略為上漲。",
            "文化局指出，今年的燈會將結合在地藝術家創作，並延長展期至元宵節後一週。",
            "議員質疑相關單位事前評估不足，要求在下次會期提出完整的改善報告。",
            "針對外界關心的停車問題，市府規劃在周邊新增兩處立體停車場，共約{big}個車位。",
            "地方人士認為，老街商圈若能結合觀光資源與特色小店，將有助於吸引年輕人回流。",
            "民眾如有任何疑問，可於上班時間撥打市民服務專線一九九九洽詢。",
        ],
    },
    "tech": {
        "titles": ["{company}發表新一代筆電　續航力再升級", "生成式AI進入職場　企業如何導入",
                   "資安公司示警：假更新通知竊帳密", "半導體出口成長　{company}看好下半年", "雲端服務助中小企業數位轉型",
                   "{company}推出新版軟體修正安全漏洞"],
        "sentences": [
            "{company}今天發表新一代筆記型電腦，搭載自家設計的處理器，續航力最長可達{k}小時。",
            "隨著生成式人工智慧快速發展，越來越多企業開始導入大型語言模型，協助客服與文件整理。",
            "專家提醒，使用公共無線網路時應避免登入網路銀行，並定期更新作業系統與防毒軟體。",
            "這款應用程式推出後，下載次數在一個月內突破{n}萬次，使用者以二十至三十五歲族群為主。",
            "半導體產業仍是臺灣出口的主要動能，今年前三季相關產品出口值較去年同期成長{pct}%。",
            "新版軟體修正了多項安全性漏洞，官方建議使用者盡快更新，以免個人資料外洩。",
            "研究團隊利用機器學習分析衛星影像，能在颱風來臨前更準確地預測可能淹水的區域。",
            "雲端服務的普及讓中小企業不必自行架設伺服器，也能以較低成本建置資料庫與備份系統。",
            "電信業者表示，第五代行動通訊的涵蓋率已超過九成，偏鄉地區的網路品質也逐步改善。",
            "資安公司發現，有駭客利用假冒的更新通知散布惡意程式，竊取使用者的帳號密碼。",
            "許多學校開設程式設計課程，讓學生從小學習運算思維與解決問題的能力。",
            "這套系統預設會自動備份照片與影片，使用者也可以在設定頁面中手動關閉。",
            "開發者社群在週末舉辦黑客松，參賽隊伍在四十八小時內完成各式開放資料應用。",
            "電動車市場競爭激烈，各家車廠紛紛推出續航里程更長、充電速度更快的新車款。",
            "有網友實測，新款手機的相機在低光源環境下表現明顯進步，夜拍畫面更清晰。",
            "政府推動數位身分識別，未來民眾可透過手機完成多項線上申辦服務。",
            "記憶體價格在第二季止跌回升，模組廠預估下半年的出貨量將持續成長。",
            "印表機卡紙、滑鼠失靈這類小問題，往往是辦公室資訊人員最常處理的求助案件。",
            "開源專案的維護者呼籲，企業在使用開源軟體的同時，也應投入資源回饋社群。",
            "智慧電表已在{city}試辦，住戶可以即時查看每小時的用電量。",
            "分析師認為，伺服器需求受惠於資料中心擴建，相關供應鏈今年營收可望創新高。",
            "專家建議，重要檔案最好遵循「三二一」備份原則：三份副本、兩種媒介、一份異地保存。",
        ],
    },
    "travel": {
        "titles": ["{place}秋冬賞景全攻略", "慢遊{place}：老街、步道與在地小吃", "{place}兩天一夜小旅行",
                   "夏日到{place}看海", "{place}賞螢季開跑　遊客請守規範", "騎單車遊{place}"],
        "sentences": [
            "{place}以壯麗的山景聞名，每年秋冬之際，滿山楓紅吸引大批遊客前往。",
            "從火車站出發，搭乘公車約{k}十分鐘即可抵達登山口，假日班次較多。",
            "沿著步道緩緩上行，沿途可以看到茂密的原始林和潺潺溪流，空氣格外清新。",
            "老街兩旁保留了許多紅磚建築，轉角的百年廟宇更是當地居民的信仰中心。",
            "建議遊客避開連續假期，平日前往不但人潮較少，住宿價格也比較實惠。",
            "傍晚時分到海邊欣賞夕陽，是許多旅人到{place2}必做的行程之一。",
            "這間民宿由一對返鄉青年經營，房間布置簡單溫馨，早餐使用在地小農的食材。",
            "騎著自行車沿著海岸線前進，一邊是湛藍的太平洋，一邊是翠綠的海岸山脈。",
            "夜市裡的小吃攤一字排開，從蚵仔煎、臭豆腐到珍珠奶茶，每一樣都讓人想嘗試。",
            "島上的交通以機車最為方便，租車前記得確認駕照與保險相關規定。",
            "每年{month}月是賞螢的季節，管理處提醒遊客不要使用手電筒直射，也不要捕捉螢火蟲。",
            "博物館內收藏了數千件原住民族文物，並定期舉辦織布與陶藝體驗活動。",
            "清晨的湖面霧氣繚繞，搭乘遊艇繞湖一圈，可以從不同角度欣賞山水景色。",
            "溫泉區的旅館大多提供泡湯與住宿的套裝行程，冬天往往一房難求。",
            "旅遊達人建議，出發前先查好當地天氣，山區午後容易起霧，最好在中午前下山。",
            "部落導覽員帶著遊客認識傳統植物，並分享祖先在山林中生活的智慧。",
            "這條鐵道支線全長約{k}十公里，沿線的小車站各有特色，很適合慢慢散步拍照。",
            "潛水愛好者可以在這片海域看到豐富的珊瑚礁生態與色彩繽紛的熱帶魚。",
            "如果時間充裕，不妨多停留一晚，體驗{place}安靜的夜晚與滿天星空。",
            "觀光署統計，去年來臺旅客人次已恢復到疫情前的{pct}%。",
        ],
    },
    "food": {
        "titles": ["{city}三十年老麵店　一碗牛肉麵的堅持", "在家做{fruit}塔：季節限定甜點", "早餐店的手工蛋餅",
                   "年菜預購開跑　佛跳牆最熱門", "{city}肉圓蒸的好還是炸的好", "冬至搓湯圓　全家團圓"],
        "sentences": [
            "這家開業超過三十年的麵店，招牌牛肉麵湯頭濃郁，牛肉軟嫩卻不失嚼勁。",
            "老闆每天清晨{k}點就到市場挑選新鮮食材，堅持當天熬煮大骨湯。",
            "滷肉飯看似簡單，但醬汁的比例與燉煮的火候，才是決定美味的關鍵。",
            "甜點師傅使用在地產的{fruit}製作季節限定塔，酸甜平衡，口感清爽。",
            "夏天來一碗剉冰，淋上黑糖蜜，再加上芋圓與紅豆，是許多人難忘的回憶。",
            "這道料理的做法並不複雜：先將雞腿肉醃漬半小時，再以中火煎至表皮金黃。",
            "店家建議搭配自製的辣椒醬一起品嘗，更能吃出湯頭的層次。",
            "早餐店的蛋餅皮是手工擀製的，煎得外酥內軟，再配上一杯冰豆漿剛剛好。",
            "營養師提醒，外食族應注意蔬菜攝取量，每天至少要吃到三份蔬菜、兩份水果。",
            "料理時可以用少量的米酒和薑絲去腥，讓魚湯喝起來更加鮮甜。",
            "這間咖啡館選用阿里山的咖啡豆，淺焙帶有明亮的果酸與花香。",
            "鳳梨酥是到臺灣旅遊最受歡迎的伴手禮之一，不少店家標榜使用土鳳梨內餡。",
            "{city}的肉圓分為蒸的和炸的兩種做法，各有擁護者。",
            "年菜預購活動已經開跑，今年的佛跳牆、烏魚子與紅燒蹄膀依舊是熱門品項。",
            "食譜作者分享，煮白飯前先將米浸泡二十分鐘，煮出來的米粒會更加飽滿。",
            "這道客家小炒以豬肉、魷魚、豆干和芹菜同炒，香氣十足，非常下飯。",
            "夜市的胡椒餅以炭火貼爐烤製，外皮酥脆，咬下去肉汁四溢，要小心燙口。",
            "素食餐廳近年越來越多，菜色也從傳統的素料理發展到創意蔬食。",
            "主廚表示，好的食材不需要過多調味，只要掌握火候，就能呈現原本的味道。",
            "許多家庭在冬至會一起搓湯圓，象徵團圓與新的一年平安順利。",
        ],
    },
    "notice": {
        "titles": ["公告修正「{reg}」部分條文", "{city}政府公告：{reg}申請須知", "預告訂定「{reg}」草案",
                   "{dept}公告受理{reg}補助申請"],
        "sentences": [
            "主旨：公告修正「{reg}」部分條文，自中華民國{roc}年{month}月{day}日生效。",
            "依據：{law}第{art}條規定辦理。",
            "公告事項：一、申請人應於期限內檢具申請書及相關證明文件，向本局提出申請。",
            "二、申請資格：設籍本市滿六個月以上，且家戶年所得未超過新臺幣{money}萬元者。",
            "三、受理期間：自即日起至{month}月{day}日止，逾期恕不受理。",
            "四、應備文件如有欠缺，經通知限期補正而逾期未補正者，駁回其申請。",
            "五、本補助經費如經查核有虛偽不實情事，除撤銷補助外，並追繳已撥付之款項。",
            "本辦法所稱主管機關，在中央為{ministry}；在直轄市為直轄市政府；在縣（市）為縣（市）政府。",
            "違反第{art}條規定者，處新臺幣{fine}元以上{fine2}元以下罰鍰，並限期改善；屆期未改善者，得按次處罰。",
            "前項申請案件，主管機關應於受理後三十日內完成審查，必要時得延長一次。",
            "本公告如有未盡事宜，得隨時補充修正之。",
            "有關本案之詳細內容，請至本府全球資訊網「最新消息」專區查詢。",
            "申請表件得以郵寄或親自送達方式辦理，郵寄者以郵戳日期為準。",
            "依行政程序法第一百五十四條規定，任何人得於本公告刊登公報之日起六十日內陳述意見。",
            "陳述意見者，請敘明理由及具體修正建議，並載明姓名、聯絡電話及地址。",
            "本要點自發布日施行；修正時亦同。",
            "補助對象以實際從事農業生產之自然人或農民團體為限。",
            "為維護公共安全，施工期間請用路人注意安全並配合交通管制措施。",
            "承辦單位：{city}政府{dept}，聯絡電話：(0{k}){tel}。",
        ],
    },
    "education": {
        "titles": ["少子化衝擊　大學新生再減{n}人", "偏鄉小校的混齡教學", "新課綱上路　素養導向怎麼教",
                   "{city}國中推動晨讀十五分鐘", "技職教育產學合作　學生畢業即就業", "雙語教育師資不足"],
        "sentences": [
            "教育部公布最新統計，今年大學新生人數較去年減少約{big}人，少子化衝擊持續擴大。",
            "這所偏鄉國小全校只有{n}名學生，老師們透過混齡教學，讓孩子互相學習。",
            "新課綱強調素養導向，鼓勵學生從生活情境中發現問題、動手解決。",
            "家長團體呼籲，應減少學生的考試壓力，讓孩子有更多時間探索興趣。",
            "學校圖書館推動晨讀活動，每天早上十五分鐘，讓閱讀成為學生的日常習慣。",
            "大學入學考試將於{month}月舉行，考生應提早確認試場位置與應考規定。",
            "這位退休教師在社區開設免費課輔班，十多年來陪伴上百名孩子完成學業。",
            "技職教育與產業合作日益密切，不少學生在畢業前就已獲得實習廠商的工作邀約。",
            "研究發現，每天規律運動的學生，在專注力與學習成效上都有較好的表現。",
            "雙語教育政策上路後，部分學校反映師資不足，希望教育部提供更多支援。",
            "學生利用暑假參與社區服務，協助整理老街的歷史照片與口述訪談紀錄。",
            "校方表示，將在明年汰換老舊的冷氣與照明設備，改善教室的學習環境。",
            "數位學習平臺提供大量免費課程，學生可以依照自己的進度反覆練習。",
            "許多大學開設通識課程，讓理工科學生也能修習哲學、歷史與藝術。",
            "國中會考成績公布後，各校陸續舉辦升學輔導說明會，協助學生選填志願。",
            "這項研究的研究對象為全國{big}名國中學生，調查期間長達{k}年。",
            "教師團體認為，減少行政工作，才能讓老師把心力放回教學現場。",
            "校園午餐導入在地食材，不僅讓學生吃得更安心，也支持了地方農業。",
        ],
    },
    "health": {
        "titles": ["天冷心血管風險升高　醫師提醒保暖", "成人運動量不足　專家建議每週一百五十分鐘",
                   "睡不好影響免疫力", "流感疫苗{month}月開打", "上班族久坐　小心肩頸痠痛", "預防骨鬆從年輕開始"],
        "sentences": [
            "醫師提醒，天氣轉涼時心血管疾病的風險升高，長者外出應注意保暖。",
            "國民健康署調查顯示，成人每週運動達一百五十分鐘的比例仍不到四成。",
            "睡眠不足會影響免疫力與情緒，專家建議成人每晚應睡足七到八小時。",
            "流感疫苗接種計畫將於{month}月開打，六十五歲以上長者及幼兒可免費接種。",
            "營養師建議，每天喝足夠的水，並減少含糖飲料的攝取。",
            "久坐辦公的上班族，最好每隔一小時起身活動，伸展肩頸與腰背。",
            "研究指出，規律的有氧運動有助於控制血壓與血糖。",
            "如果出現持續咳嗽、發燒或呼吸急促等症狀，應盡速就醫。",
            "牙醫師建議每半年定期洗牙，並使用牙線清潔牙縫。",
            "衛生單位提醒，夏季氣溫高，食物應冷藏保存，避免病從口入。",
            "心理師指出，面對壓力時適時與親友傾訴，是維持身心健康的重要方法。",
            "{city}的醫院推出線上掛號與看診進度查詢服務，民眾可減少在候診區等待的時間。",
            "過敏體質的人在季節交替時容易出現鼻塞、打噴嚏等症狀。",
            "長期熬夜、飲食不規律，是年輕族群腸胃問題增加的主要原因之一。",
            "預防骨質疏鬆要從年輕開始，多曬太陽、攝取足夠的鈣質並維持運動習慣。",
            "衛生福利部表示，將擴大篩檢補助，鼓勵民眾定期接受癌症篩檢。",
            "藥師提醒，服用多種藥物的長輩，應主動告知醫師目前正在使用的藥品。",
            "登革熱流行季節到來，民眾應清除住家內外的積水容器。",
        ],
    },
    "environment": {
        "titles": ["梅雨偏少　水利署籲節約用水", "{city}{crop}盛產　農會產地直銷", "淨灘兩小時撿{n}公斤垃圾",
                   "保育石虎　道路設動物通道", "春茶減產兩成　品質依舊穩定", "候鳥過境濕地公園"],
        "sentences": [
            "今年梅雨季降雨量偏少，水利署呼籲民眾節約用水。",
            "農民表示，連日大雨造成部分菜園積水，葉菜類價格短期內可能上漲。",
            "{city}的{crop}進入盛產期，農會舉辦產地直銷活動。",
            "環保團體在海灘淨灘，兩小時內撿拾了超過{n}公斤的垃圾，其中以塑膠瓶蓋最多。",
            "為了保育石虎，地方政府在道路旁設置警示標誌與動物通道。",
            "再生能源占比逐年提高，離岸風電與太陽光電是主要的發展方向。",
            "茶農指出，今年春茶受到氣候影響，產量減少約兩成，但品質依舊穩定。",
            "專家建議，家中可以使用節能標章電器，並隨手關燈，減少不必要的用電。",
            "濕地公園吸引大批候鳥過境，賞鳥人士扛著長鏡頭守候。",
            "資源回收的分類越確實，回收物再利用的比例就越高。",
            "林業單位持續推動造林計畫，並邀請民眾參與植樹活動。",
            "氣候變遷使極端天氣更加頻繁，農業部門正研究耐熱的作物品種。",
            "空氣品質監測站顯示，今天中南部地區的細懸浮微粒濃度偏高，敏感族群應減少戶外活動。",
            "有機農場的主人說，不用農藥雖然辛苦，但看到土地恢復生機就覺得值得。",
            "漁會提醒，休漁期間禁止捕撈，以維護海洋資源永續。",
            "社區居民自發認養河岸綠地，定期整理環境並種植原生植物。",
            "{district}的水庫蓄水率目前約{pct}%，自來水公司表示供水暫時無虞。",
        ],
    },
    "culture": {
        "titles": ["城市記憶特展　{n}位藝術家聯展", "布袋戲新劇目融合現代聲光", "老戲院變身藝文空間",
                   "桐花祭登場　山林一片雪白", "母語創作唱出族語之美", "傳統工藝後繼無人"],
        "sentences": [
            "這場展覽集結了{n}位藝術家的作品，以影像、裝置與聲音探討城市記憶。",
            "布袋戲團今年推出新劇目，融合傳統技藝與現代燈光音效。",
            "作家在新書座談會上分享，她花了{k}年時間走訪各地，記錄老人家的生命故事。",
            "國家音樂廳將於週末舉辦交響樂演出，曲目包含臺灣作曲家的新作。",
            "廟會活動中，陣頭與神轎繞境，沿途信眾擺設香案迎接。",
            "獨立書店舉辦讀書會，邀請讀者一起討論本月選書。",
            "紀錄片導演花了三年拍攝漁村的日常，作品入圍國際影展。",
            "客家桐花祭期間，山區步道滿是雪白的油桐花，吸引不少攝影愛好者。",
            "這間老戲院改建為藝文空間，定期放映經典電影並舉辦講座。",
            "原住民族歌手以母語創作，讓更多年輕人認識族語之美。",
            "博物館推出夜間導覽，帶領民眾在不同的光影下欣賞館藏。",
            "書法家示範揮毫，現場民眾排隊索取春聯。",
            "文學獎今年的參賽作品數創下新高，評審認為整體水準相當整齊。",
            "社區劇場由居民自編自演，故事取材自當地的歷史事件。",
            "傳統工藝師傅感嘆，願意投入學習的年輕人越來越少，技藝面臨失傳危機。",
            "{city}的老街每逢週末就有街頭藝人表演，為街區增添不少活力。",
            "策展人表示，希望觀眾走出展場後，能用新的眼光重新看待自己生活的城市。",
        ],
    },
}

TW_QUOTES = [
    "「我們最在意的是安全，其他的都可以慢慢調整。」",
    "「這件事拖了很久，大家都希望能早點看到成果。」",
    "「只要用心做，大家一定感受得到。」",
    "「大家的支持就是我們繼續下去的動力。」",
    "「希望政府能多聽聽基層的聲音。」",
    "「其實改變不難，難的是踏出第一步。」",
    "「每一次參與都有不同的收穫，下次還想再來。」",
    "「事前準備好，出事的時候才不會手忙腳亂。」",
    "「這是一個好的開始，但後續的維護更重要。」",
    "「能夠把經驗傳承下去，是我最大的心願。」",
]

# Commentary sentences built from three parts (10 x 10 x 10 and more with names): they make pages
# of the same topic differ well beyond the shared sentence pools.
TW_OPENERS = ["對此，{person}認為", "{person}分析", "{person}也提醒", "不少民眾反映", "有學者指出", "根據{dept}的資料",
              "業者坦言", "{city}在地居民表示", "相關單位說明", "{person}補充"]
TW_CLAUSE_A = ["這樣的變化並非一夕之間發生", "短期內的影響可能有限", "各方意見仍有不小的落差", "未來仍有許多細節需要討論",
               "相關數據還需要更長時間觀察", "實際執行時難免遇到困難", "過去幾年的經驗可以作為參考",
               "地方與中央需要更密切地合作", "資訊公開是建立信任的第一步", "成本與效益必須一併考量"]
TW_CLAUSE_B = ["希望各界給予更多耐心", "後續將持續追蹤並滾動檢討", "民眾的參與將是成功的關鍵", "也期待能帶動周邊產業發展",
               "必要時會再召開說明會", "目前已著手研擬配套措施", "年輕世代的想法特別值得重視", "將優先照顧弱勢族群的需求",
               "並不排除分階段實施", "相信長期來看會有正面效果"]

DUIXIANG_PAGES = [
    ("交友軟體改變尋找對象的方式", [
        "一項針對二十至三十九歲未婚青年的調查發現，年輕人尋找交往對象的方式，已從親友介紹逐漸轉向交友軟體。",
        "受訪者中約有四成曾透過網路認識約會對象，其中不少人表示，初次見面前會先視訊確認對方的身分。",
        "社工師提醒，與網路上認識的對象見面時，應選擇公開場所，並事先告知親友行程。",
        "也有受訪者坦言，父母仍會關心自己有沒有結婚對象，逢年過節總免不了被問上幾句。",
        "研究團隊表示，本次調查的對象涵蓋北、中、南、東四區，樣本數共一千二百份。",
    ]),
    ("長照服務對象擴大　更多家庭受惠", [
        "衛生福利部宣布，長期照顧服務的服務對象將擴大至五十五歲以上的原住民族及失智症患者。",
        "地方照管中心表示，符合資格的民眾可撥打長照專線一九六六，由照管專員到府評估。",
        "過去許多家屬不清楚自己的家人是否屬於補助對象，導致錯過申請的時機。",
        "社區據點的志工說，照顧的對象不只是長輩，也包括長期承受壓力的家庭照顧者。",
        "主管機關也將針對服務對象的滿意度進行調查，作為明年調整服務項目的參考。",
    ]),
]

VARIANT_PAGES = [
    ("山中書院記", [
        "書院建於清代，坐落在羣山之間，爲地方子弟讀書講學之所。",
        "院裏有一口古井，井水清冽，相傳大旱之年亦未曾乾涸。",
        "每逢春日，衆人沿着石階上山，遠眺層峯疊翠，雲霧繚繞。",
        "舊時學子於此啓蒙，晨讀夜誦，寒暑不輟。",
        "如今書院由地方文史工作者整理修復，定期開放參觀，並舉辦經典導讀活動。",
    ]),
    ("古道散記", [
        "這條古道昔日爲挑夫往來山海之間的要路，沿途可見石砌的駁坎與土地公廟。",
        "步道裏段林木蓊鬱，着實清涼，夏日行走亦不覺炎熱。",
        "登上稜線後，羣峯環抱，衆多山頭在眼前一字排開。",
        "據地方耆老口述，早年村民多以採茶爲生，收成時節山路上人聲不斷。",
        "沿線的解說牌介紹了古道的歷史，也提醒登山客尊重山林、不留垃圾。",
    ]),
]

# --------------------------------------------------------------------------- boilerplate (zh-TW sites)

SITES = [
    {
        "host": "www.island-daily.example",
        "header": ["首頁 | 即時新聞 | 政治 | 生活 | 地方 | 國際 | 財經 | 影音", "搜尋 登入 訂閱電子報"],
        "footer": ["分享到 Facebook | LINE | X | 複製連結 | 列印",
                   "相關新聞", "本網站使用 Cookie 以提供更好的瀏覽體驗，繼續瀏覽即表示您同意我們的隱私權政策。 我知道了",
                   "版權所有 © 2024 島嶼日報 All Rights Reserved.", "關於我們 | 聯絡我們 | 廣告刊登 | 隱私權政策 | 服務條款"],
    },
    {
        "host": "news.harbor-city.example",
        "header": ["網站導覽 | 首頁 | 關於我們 | 最新消息 | 活動訊息 | 聯絡我們", "字級：小 中 大"],
        "footer": ["回上一頁　回首頁　友善列印", "瀏覽人次：{visits}",
                   "地址：{city}中山路一段一號　電話：(02)2345-6789　服務時間：週一至週五 08:30-17:30",
                   "Copyright © 2024 港城新聞網 版權所有，轉載請註明出處"],
    },
    {
        "host": "blog.tea-and-rice.example",
        "header": ["茶與米的生活筆記", "首頁 | 旅遊 | 美食 | 生活 | 關於我 | 聯絡我"],
        "footer": ["文章標籤：生活 旅遊 美食 臺灣", "喜歡這篇文章嗎？歡迎分享給你的朋友！",
                   "上一篇：{prev}　下一篇：{next}", "留言（{comments}）", "© 2024 茶與米的生活筆記 版權所有"],
    },
    {
        "host": "www.county-gov.example",
        "header": ["跳到主要內容區", ":::　網站導覽 | 回首頁 | English | 常見問答 | RSS",
                   "首頁 > 最新消息 > 公告事項"],
        "footer": ["發布單位：{dept}　發布日期：{date}　更新日期：{date}", "點閱次數：{visits}",
                   "本網站最佳瀏覽解析度為 1280x800 以上", "版權所有 © {city}政府　地址：{city}府前路一號　總機：(03)932-5678",
                   "隱私權及資訊安全政策 | 政府網站資料開放宣告 | 無障礙聲明"],
    },
    {
        "host": "www.tech-weekly.example",
        "header": ["科技週報 | 首頁 | AI | 半導體 | 手機 | 資安 | 評測 | 活動", "加入會員 | 登入"],
        "footer": ["延伸閱讀", "訂閱我們的電子報，掌握最新科技趨勢。 訂閱",
                   "我們使用 Cookie 來分析流量並改善您的使用體驗。 接受全部 | 設定",
                   "科技週報 © 2024 版權所有 | 廣告合作 | 徵才 | 聯絡我們"],
    },
]

# --------------------------------------------------------------------------- zh-CN sentences (Simplified)

CN_TOPICS: dict[str, dict[str, list[str]]] = {
    "tech": {
        "titles": ["新版软件大幅优化内存占用", "云计算平台支持一键部署数据库", "网络安全专家提醒警惕短信链接",
                   "人工智能改变软件开发行业", "新款笔记本电脑续航约{k}小时"],
        "sentences": [
            "这款软件的最新版本优化了内存占用，在低配置电脑上运行也更加流畅。",
            "用户可以在设置菜单中修改默认的下载路径和视频播放质量。",
            "随着移动互联网的普及，越来越多的人习惯用手机处理日常事务。",
            "该公司发布的云计算平台支持一键部署数据库和服务器集群。",
            "网络安全专家提醒，不要随意点击短信中的陌生链接，以防个人信息泄露。",
            "程序员社区近日讨论热烈，话题集中在人工智能对软件开发行业的影响。",
            "新款笔记本电脑配备了高分辨率屏幕和大容量固态硬盘，续航时间约{k}小时。",
            "打印机驱动程序安装失败时，可以尝试重新启动电脑后再次安装。",
            "鼠标和键盘的使用习惯不当，长期下来可能导致手腕疼痛。",
            "开发团队表示，下个版本将加入离线模式，用户在没有网络的情况下也能查看文档。",
            "该视频网站的日活跃用户已超过一亿，短视频内容增长最快。",
            "信息化建设是提升政府服务效率的重要手段。",
            "数据显示，今年上半年全国软件业务收入同比增长{pct}%。",
            "工程师建议定期清理浏览器缓存，并及时更新操作系统补丁。",
            "这款U盘采用金属外壳，读写速度比上一代产品提高了一倍。",
            "智能手机的摄像头越来越强大，普通用户也能拍出专业水准的照片。",
        ],
    },
    "city": {
        "titles": ["{cn_city}地铁新线今日开通", "{cn_city}本周末将明显降温", "{cn_city}新建改扩建中小学{k}所",
                   "{cn_city}发展夜间经济促进消费", "{cn_city}新增就业岗位{n}万个"],
        "sentences": [
            "{cn_city}地铁{k}号线今日正式开通运营，全长约{n}公里，共设{n2}座车站。",
            "市交通部门表示，新线开通后将有效缓解早晚高峰的交通拥堵。",
            "据气象台消息，受冷空气影响，本周末全市将出现明显降温，最低气温或降至{k}摄氏度。",
            "该区今年计划新建和改扩建中小学{k}所，新增学位约{big}个。",
            "社区工作人员走访辖区老年人，了解他们的生活需求并提供帮助。",
            "出租车和公交车票价暂不调整，市民出行成本保持稳定。",
            "有关部门提醒，节假日期间景区人流量大，游客应提前预约并错峰出行。",
            "这家老字号餐馆已有百年历史，每到周末门口都排起长队。",
            "据了解，该项目总投资约{n}亿元，预计明年年底竣工。",
            "环保部门加大执法力度，对违规排放的企业依法进行处罚。",
            "市民王女士说，小区周边新开了菜市场和便利店，生活方便了很多。",
            "今年以来，全市新增就业岗位{n}万个，城镇登记失业率保持在较低水平。",
            "专家认为，发展夜间经济有助于促进消费，带动餐饮和文旅行业复苏。",
            "志愿者们在公园开展垃圾分类宣传活动，向居民发放宣传资料。",
        ],
    },
    "life": {
        "titles": ["高考成绩本月下旬公布", "学校开设编程和机器人课程", "专家：每天户外活动不少于两小时",
                   "年轻人周末爱上郊外露营", "图书馆延长开放时间"],
        "sentences": [
            "高考成绩将于本月下旬公布，考生可通过官方网站或短信查询。",
            "学校开设了编程和机器人课程，深受学生欢迎。",
            "家长们普遍关心孩子的视力问题，专家建议每天户外活动不少于两小时。",
            "在线教育平台推出免费直播课，覆盖语文、数学、英语等科目。",
            "营养专家建议，早餐应包含蛋白质、谷物和新鲜水果。",
            "很多年轻人选择周末去郊外露营，放松心情。",
            "这部纪录片讲述了乡村教师坚守岗位三十年的故事。",
            "图书馆延长了开放时间，方便上班族下班后借阅图书。",
            "健身房会员数量持续增长，越来越多的人开始重视身体健康。",
            "外卖平台推出环保餐具选项，鼓励用户减少一次性塑料制品的使用。",
            "研究表明，充足的睡眠对青少年的学习和记忆非常重要。",
            "大学毕业生就业形势总体稳定，信息技术和制造业岗位需求较大。",
            "{cn_city}的博物馆推出线上预约系统，游客可以通过手机选择参观时段。",
        ],
    },
    "economy": {
        "titles": ["电商平台交易额再创新高", "直播带货打开农产品销路", "新能源汽车销量持续增长",
                   "跨境电商助力中小企业出海", "手机银行功能越来越完善"],
        "sentences": [
            "今年“双十一”期间，各大电商平台的交易额再创新高。",
            "快递公司表示，已增加分拣中心的人手，确保包裹及时送达。",
            "消费者在网上购物时，应选择正规平台，保留好交易凭证。",
            "直播带货成为新的销售模式，不少农产品通过网络直播打开了销路。",
            "央行数据显示，{month}月末广义货币余额同比增长{pct}%。",
            "新能源汽车销量持续增长，充电桩建设也在加快推进。",
            "跨境电商为中小企业开拓海外市场提供了新渠道。",
            "业内人士分析，原材料价格波动是影响企业利润的主要因素。",
            "这家公司的移动支付用户已覆盖全国三百多个城市。",
            "超市里的蔬菜价格较上月小幅回落，猪肉价格基本持平。",
            "手机银行的功能越来越完善，用户足不出户就能办理大部分业务。",
            "物流园区投入使用后，预计每年可处理货物{n}万吨。",
            "{cn_city}出台新政策，支持软件和信息服务企业扩大规模。",
        ],
    },
}

CN_SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"]
CN_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "强", "洋", "艳", "杰", "涛", "丽"]
CN_ROLES = ["市民", "工程师", "店主", "教师", "研究员", "程序员", "快递员", "社区干部", "大学生", "农户"]
CN_OPENERS = ["对此，{cn_person}认为", "业内人士分析", "有专家指出", "据相关部门介绍", "不少市民表示", "{cn_person}告诉记者",
              "记者了解到", "相关负责人表示", "{cn_person}坦言", "{cn_city}的一位{cn_role}说"]
CN_CLAUSE_A = ["这一变化并非一朝一夕形成的", "短期内的影响较为有限", "各方看法仍存在一定差异", "具体细则还有待进一步明确",
               "相关数据仍需持续观察", "实际推进中难免会遇到困难", "过去几年的经验值得借鉴", "上下游企业需要加强协作",
               "信息公开是赢得信任的前提", "投入和产出必须综合考虑"]
CN_CLAUSE_B = ["希望社会各界多一些耐心", "下一步将持续跟踪并及时调整", "群众的参与是成功的关键", "也有望带动周边产业发展",
               "必要时还将召开专题会议", "目前已着手制定配套措施", "年轻人的想法尤其值得重视", "将优先保障困难群体的需求",
               "不排除分阶段实施的可能", "从长远看将产生积极影响"]

# --------------------------------------------------------------------------- English sentences

EN_TOPICS: dict[str, dict[str, list[str]]] = {
    "tech": {
        "titles": ["How to Back Up Your Files Properly", "A Beginner's Guide to Home Networking",
                   "Five Tips for Faster Laptops", "Why Open Source Maintainers Need Support"],
        "sentences": [
            "Most people only think about backups after they lose something important.",
            "A simple rule is to keep three copies of your data on two different kinds of media, with one copy off site.",
            "Cloud storage is convenient, but it should not be the only place your photos live.",
            "Routers ship with default passwords that are easy to guess, so change them on the first day.",
            "If your laptop feels slow, check which programs start automatically when you log in.",
            "Adding more memory often helps more than buying a faster processor.",
            "Open source libraries power most modern software, yet many are maintained by a handful of volunteers.",
            "Companies that depend on these projects can help by funding maintainers or contributing fixes.",
            "Keep your operating system updated; many attacks exploit bugs that were patched months ago.",
            "A password manager lets you use a different long password for every site without memorising them.",
            "Before you reinstall anything, write down the exact error message and search for it.",
            "Wired connections are still more reliable than wireless ones for video calls.",
        ],
    },
    "travel": {
        "titles": ["A Weekend in the Mountains", "Street Food Worth the Queue", "Cycling the East Coast",
                   "What to Pack for a Rainy Trip"],
        "sentences": [
            "We left the city early in the morning and reached the trailhead just after sunrise.",
            "The path climbs gently through a forest of cedar and bamboo before opening onto a ridge.",
            "Night markets are the best place to try a little of everything without spending much.",
            "Our favourite stall sold pepper buns baked against the wall of a clay oven.",
            "The coastal road has a wide shoulder, which makes it popular with cyclists.",
            "Pack a light rain jacket even if the forecast looks clear, because afternoon showers are common.",
            "Trains between the larger towns are frequent, but buses to the villages may run only a few times a day.",
            "Small guesthouses often serve breakfast made with vegetables from nearby farms.",
            "If you can, travel on weekdays; the trails are quieter and rooms are cheaper.",
            "Bring cash for small shops, since not every vendor accepts cards.",
            "The view from the lighthouse at dusk was worth the long walk back.",
        ],
    },
    "science": {
        "titles": ["What Fireflies Tell Us About Clean Rivers", "How Weather Forecasts Got Better",
                   "Why Sleep Matters for Memory", "The Quiet Return of Wetland Birds"],
        "sentences": [
            "Fireflies need clean water and dark nights, so their numbers are a useful sign of a healthy valley.",
            "Modern forecasts combine satellite images, weather balloons and thousands of ground stations.",
            "Computer models divide the atmosphere into a grid and step the equations forward in time.",
            "During deep sleep the brain replays the day's experiences, which helps turn them into long-term memories.",
            "Researchers counted migrating birds at the wetland every week for three winters.",
            "Restoring a wetland can take years, but the first birds often return within a single season.",
            "Light pollution confuses many insects and makes it harder for them to find mates.",
            "Scientists caution that a single study rarely settles a question on its own.",
            "Citizen science projects let volunteers contribute real data to long-term studies.",
            "The team shared its measurements openly so other groups could check the results.",
        ],
    },
}

EN_TOPICS["home"] = {
    "titles": ["Growing Herbs on a Small Balcony", "A Simple Plan for a Tidier Kitchen", "Fixing a Dripping Tap",
               "Saving Energy at Home"],
    "sentences": [
        "Basil, mint and chives grow happily in pots as long as they get a few hours of sun.",
        "Water in the morning so the leaves dry before the evening cools down.",
        "A dripping tap usually needs nothing more than a new washer and ten minutes.",
        "Turn off the water supply under the sink before you take anything apart.",
        "Labelled jars make it easy to see when you are running low on rice or flour.",
        "Keep the things you use every day within reach and store the rest higher up.",
        "Switching to LED bulbs is one of the cheapest ways to cut an electricity bill.",
        "A draught excluder along the bottom of a door keeps a surprising amount of heat inside.",
        "Compost kitchen scraps and your balcony plants will thank you by midsummer.",
        "Wash dishes in a bowl rather than under a running tap to save water.",
        "Once a season, empty one cupboard completely and put back only what you use.",
    ],
}
EN_TOPICS["books"] = {
    "titles": ["Why I Keep a Reading Journal", "Rediscovering the Public Library", "Short Books for Busy Weeks",
               "What Old Maps Can Teach Us"],
    "sentences": [
        "A reading journal does not need to be elaborate; a line or two per book is enough.",
        "Writing down a favourite sentence helps me remember the whole chapter around it.",
        "The public library lends far more than books, from music to museum passes.",
        "Librarians are often the quickest route to the answer you could not find online.",
        "A short novel can be finished on a weekend and still stay with you for years.",
        "Old maps show which rivers were moved, which roads vanished and which towns grew.",
        "Reading aloud to children builds vocabulary faster than any app we have tried.",
        "Book clubs work best when nobody feels guilty about not finishing the book.",
        "Second-hand bookshops reward slow browsing more than any search engine.",
        "Keeping a book by the bed made me read twenty minutes a day without trying.",
        "Translations deserve more credit; a good translator is a writer in their own right.",
    ],
}
EN_NAMES = ["Maya Chen", "Tom Alvarez", "Priya Nair", "Lena Novak", "Sam Okafor", "Jonas Berg", "Ava Lin", "Noah Brooks"]
EN_OPENERS = ["As {en_name} put it,", "According to {en_name},", "Locals say", "In our experience,", "One reader wrote that",
              "The guide told us that", "Several experts agree that", "A recent survey suggests", "{en_name} reminded us that",
              "We learned that"]
EN_CLAUSE_A = ["small changes add up over time", "the first step is usually the hardest",
               "the details matter more than the headline", "good habits beat expensive tools",
               "it pays to plan a little ahead", "the weather can change everything", "patience is underrated",
               "the cheapest option is not always the worst", "most problems have simple causes",
               "it helps to write things down"]
EN_CLAUSE_B = ["and that is worth remembering", "so start with something easy", "which is why we keep coming back",
               "even if it takes a few tries", "and the results speak for themselves", "so check twice before you commit",
               "and that lesson stayed with us", "which surprised more than a few of us", "so do not be discouraged",
               "and the rest follows naturally"]

# --------------------------------------------------------------------------- spam (Simplified)

GAMBLING_WORDS = ["澳门威尼斯人", "葡京娱乐场", "百家乐", "真人视讯", "老虎机", "体育投注", "时时彩", "北京赛车",
                  "六合彩开奖结果", "开户送彩金", "注册送38元", "首存优惠", "百分百返水", "24小时在线客服",
                  "官方网址", "手机版下载", "娱乐城", "现金网", "棋牌游戏", "捕鱼游戏", "电子游艺", "信誉平台",
                  "提款秒到账", "代理加盟", "最新网址", "大额无忧", "线上博彩", "皇冠体育", "太阳城", "永利娱乐"]
GAMBLING_LINES = [
    "本平台是亚洲最大的线上娱乐平台，提供百家乐、老虎机、体育投注等多种游戏，注册即送彩金，存款秒到账。",
    "【官方唯一指定网址】请认准官网，谨防假冒，新会员首存即送100%优惠，最高可得8888元。",
    "真人荷官现场发牌，公平公正公开，24小时客服在线为您服务，提款五分钟到账。",
    "手机下载APP即可随时随地畅玩，支持微信、支付宝、银行卡充值。",
    "代理加盟月入十万不是梦，佣金日结，无需投资，轻松赚钱。",
    "每日签到领取彩金，连续签到七天更有神秘大礼相送。",
    "信誉第一，资金安全有保障，大额提款无忧，千万玩家的共同选择。",
]
ADULT_WORDS = ["成人视频", "午夜福利", "免费在线观看", "高清无码", "国产精品", "日韩视频", "欧美视频",
               "在线播放", "看片神器", "福利视频", "美女直播", "一区二区", "永久免费", "最新地址", "夜夜看"]
NONSENSE = ["闪电划破长空龙道人沉声开口道", "只见那掌门眉头一皱", "三派弟子齐聚山门", "一道剑光直冲云霄",
            "他没把这一战放在心上", "仙器光芒大作", "妖兽嘶吼着扑了过来", "众人面面相觑"]


# fmt: on


# --------------------------------------------------------------------------- building pages


class SampleBuilder:
    """Composes the pages from the sentence pools with one seeded random generator."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.used_urls: set[str] = set()
        self.zh_tw: list[Page] = []  # articles that duplicates may copy

    # -- slots and helpers

    def _slots(self) -> dict[str, str]:
        r = self.rng
        city, city2 = r.sample(TW_CITIES, 2)
        road, road2 = r.sample(TW_ROADS, 2)
        place, place2 = r.sample(TW_PLACES, 2)
        fine = r.choice([1500, 3000, 6000, 10000, 20000])
        return {
            "city": city,
            "city2": city2,
            "district": r.choice(TW_DISTRICTS),
            "road": road,
            "road2": road2,
            "place": place,
            "place2": place2,
            "facility": r.choice(TW_FACILITIES),
            "company": r.choice(TW_COMPANIES),
            "fruit": r.choice(TW_FRUITS),
            "crop": r.choice(TW_CROPS),
            "dept": r.choice(TW_DEPTS),
            "reg": r.choice(TW_REGS),
            "law": r.choice(TW_LAWS),
            "ministry": r.choice(TW_MINISTRIES),
            "cn_city": r.choice(CN_CITIES),
            "n": str(r.randint(3, 95)),
            "n2": str(r.randint(8, 40)),
            "k": str(r.randint(2, 9)),
            "big": f"{r.randint(12, 980) * 100:,}",
            "pct": f"{r.randint(2, 38)}.{r.randint(0, 9)}",
            "year": str(r.randint(2025, 2029)),
            "roc": str(r.randint(113, 114)),
            "month": str(r.randint(1, 12)),
            "day": str(r.randint(1, 28)),
            "art": str(r.randint(3, 42)),
            "money": str(r.randint(50, 160)),
            "fine": f"{fine:,}",
            "fine2": f"{fine * 5:,}",
            "tel": f"{r.randint(2000, 9899)}-{r.randint(1000, 9999)}",
        }

    def _person(self) -> str:
        r = self.rng
        return f"{r.choice(TW_ROLES)}{r.choice(TW_SURNAMES)}{r.choice(TW_GIVEN)}"

    def _url(self, host: str, section: str, ext: str = ".html") -> str:
        while True:
            n = self.rng.randint(10000, 999999)
            url = f"https://{host}/{section}/2024/05/{n}{ext}"
            if url not in self.used_urls:
                self.used_urls.add(url)
                return url

    @staticmethod
    def _join(title: str, paragraphs: list[str]) -> list[str]:
        return [title, *paragraphs]

    def _paragraphs(self, sentences: list[str], sep: str = "") -> list[str]:
        """Split sentences into paragraphs of 1-3 sentences (one line each)."""
        out, i = [], 0
        while i < len(sentences):
            k = self.rng.randint(1, 3)
            out.append(sep.join(sentences[i : i + k]))
            i += k
        return out

    # -- zh-TW

    def _commentary(self, lang: str, slots: dict[str, str]) -> str:
        r = self.rng
        if lang == "tw":
            opener = r.choice(TW_OPENERS).format(
                person=self._person(), **{k: slots[k] for k in ("dept", "city")}
            )
            return f"{opener}，{r.choice(TW_CLAUSE_A)}，{r.choice(TW_CLAUSE_B)}。"
        if lang == "cn":
            person = f"{r.choice(CN_ROLES)}{r.choice(CN_SURNAMES)}{r.choice(CN_GIVEN)}"
            opener = r.choice(CN_OPENERS).format(
                cn_person=person, cn_city=slots["cn_city"], cn_role=r.choice(CN_ROLES)
            )
            return f"{opener}，{r.choice(CN_CLAUSE_A)}，{r.choice(CN_CLAUSE_B)}。"
        opener = r.choice(EN_OPENERS).format(en_name=r.choice(EN_NAMES))
        return f"{opener} {r.choice(EN_CLAUSE_A)}, {r.choice(EN_CLAUSE_B)}."

    def _compose(
        self, lang: str, pool: dict[str, list[str]], picks: tuple[int, int]
    ) -> tuple[str, list[str]]:
        """(title, paragraphs): sampled pool sentences plus two commentary sentences, slots filled."""
        r = self.rng
        slots = self._slots()
        sentences = [s.format(**slots) for s in r.sample(pool["sentences"], r.randint(*picks))]
        for _ in range(2):
            sentences.insert(r.randint(1, len(sentences)), self._commentary(lang, slots))
        if lang == "tw":
            sentences.insert(
                r.randint(1, len(sentences)), f"{self._person()}受訪時表示：{r.choice(TW_QUOTES)}"
            )
        return r.choice(pool["titles"]).format(**slots), self._paragraphs(
            sentences, sep=" " if lang == "en" else ""
        )

    def tw_article(self, topic: str | None = None) -> tuple[str, list[str]]:
        """(title, paragraphs) of one zh-TW article."""
        topic = topic or self.rng.choice(sorted(TW_TOPICS))
        return self._compose("tw", TW_TOPICS[topic], (6, 8))

    def _with_chrome(self, site: dict[str, list[str] | str]) -> str:
        """A zh-TW article inside `site`'s navigation, banners and footer."""
        r = self.rng
        title, paras = self.tw_article()
        fill = {
            "city": r.choice(TW_CITIES),
            "dept": r.choice(TW_DEPTS),
            "visits": f"{r.randint(120, 98000):,}",
            "date": f"2024-0{r.randint(1, 5)}-{r.randint(10, 28)}",
            "comments": str(r.randint(0, 40)),
            "prev": self.tw_article()[0],
            "next": self.tw_article()[0],
        }
        return "\n".join([*site["header"], title, *paras, *(line.format(**fill) for line in site["footer"])])

    def _distinct(self, group: str, make: Callable[[], str]) -> str:
        """A page text from `make` whose 5-gram Jaccard with every earlier page of `group` is
        below MAX_SIMILAR, so MinHash dedup (14x8) has well under a 1% chance to pair them."""
        seen = self._shingles.setdefault(group, [])
        for _ in range(1000):
            text = make()
            grams = _shingles(text)
            if all(_jaccard(grams, g) < MAX_SIMILAR for g in seen):
                seen.append(grams)
                return text
        raise RuntimeError(f"could not compose a distinct {group} page; add sentences to its pools")

    def build(self) -> list[Page]:
        self._shingles: dict[str, list[set[str]]] = {}
        pages: list[Page] = []
        r = self.rng
        sections = {
            "news": "local",
            "tech": "tech",
            "travel": "travel",
            "food": "food",
            "notice": "notice",
            "education": "edu",
            "health": "health",
            "environment": "env",
            "culture": "culture",
        }
        hosts = [
            "www.formosa-times.example",
            "news.jade-mountain.example",
            "www.lanyang-post.example",
            "www.taiwan-life.example",
            "www.south-port-news.example",
        ]
        topics = sorted(TW_TOPICS)
        for i in range(CATEGORY_COUNTS["zh_tw_article"]):
            topic = topics[i % len(topics)]
            text = self._distinct("zh_tw", lambda t=topic: "\n".join(self._join(*self.tw_article(t))))
            page = Page("zh_tw_article", self._url(r.choice(hosts), sections[topic]), text, "zho")
            pages.append(page)
            self.zh_tw.append(page)

        for i in range(CATEGORY_COUNTS["zh_tw_boilerplate"]):
            site = SITES[i % len(SITES)]
            text = self._distinct("zh_tw", lambda s=site: self._with_chrome(s))
            pages.append(Page("zh_tw_boilerplate", self._url(site["host"], "article"), text, "zho"))

        for category, specs in (("zh_tw_duixiang", DUIXIANG_PAGES), ("zh_tw_variants", VARIANT_PAGES)):
            for title, sentences in specs:
                text = "\n".join([title, *self._paragraphs(sentences)])
                pages.append(Page(category, self._url("www.formosa-times.example", "life"), text, "zho"))

        pages += self._zh_cn()
        pages += self._english()
        pages += self._mixed()
        pages += self._spam()
        pages += self._duplicates()
        pages += self._mojibake()
        pages += self._odd_pages()

        counts: dict[str, int] = {}
        for p in pages:
            counts[p.category] = counts.get(p.category, 0) + 1
        assert counts == CATEGORY_COUNTS, counts
        r.shuffle(pages)
        return pages

    # -- other categories

    def _zh_cn(self) -> list[Page]:
        r = self.rng
        pages = []
        topics = sorted(CN_TOPICS)
        hosts = ["news.cn-daily.example", "www.tech-hub-cn.example", "www.life-cn.example"]
        for i in range(CATEGORY_COUNTS["zh_cn_article"]):
            pool = CN_TOPICS[topics[i % len(topics)]]
            text = self._distinct(
                "zh_cn", lambda p=pool: "\n".join(self._join(*self._compose("cn", p, (4, 6))))
            )
            pages.append(Page("zh_cn_article", self._url(r.choice(hosts), "news"), text, "zho"))
        return pages

    def _english(self) -> list[Page]:
        pages = []
        topics = sorted(EN_TOPICS)
        for i in range(CATEGORY_COUNTS["english"]):
            pool = EN_TOPICS[topics[i % len(topics)]]
            text = self._distinct(
                "english", lambda p=pool: "\n".join(self._join(*self._compose("en", p, (4, 5))))
            )
            pages.append(Page("english", self._url("www.open-notes.example", "posts"), text, "eng"))
        return pages

    def _mixed(self) -> list[Page]:
        r = self.rng
        pages = []
        for _ in range(CATEGORY_COUNTS["mixed_script"]):
            _, tw = self.tw_article()
            pool = CN_TOPICS[r.choice(sorted(CN_TOPICS))]
            cn = [s.format(**self._slots()) for s in r.sample(pool["sentences"], 3)]
            lines = [
                "【轉貼】大家怎麼看？",
                f"樓主：{tw[0]}",
                f"引用：{''.join(cn)}",
                *tw[1:3],
                f"回覆：{r.choice(cn)}我觉得说得很有道理。",
                "推 說得好",
                "→ 同意樓上",
            ]
            pages.append(
                Page("mixed_script", self._url("forum.bamboo-bbs.example", "thread"), "\n".join(lines), "zho")
            )
        return pages

    def _spam(self) -> list[Page]:
        r = self.rng
        pages = []
        for _ in range(CATEGORY_COUNTS["spam_gambling"]):
            words = r.sample(GAMBLING_WORDS, 12)
            site = f"www.{r.randint(100, 999)}{r.choice(['am', 'bet', 'vip', 'yl', 'hg'])}{r.randint(10, 99)}.example"
            lines = [f"{words[0]}_{words[1]}_{words[2]}【官网】"]
            for _ in range(r.randint(6, 12)):
                lines.append(
                    r.choice(
                        [
                            f"{r.choice(words)}-{r.choice(words)}-{r.choice(words)}-{r.choice(words)}",
                            f"{r.choice(words)}官方网址：{site}",
                            r.choice(GAMBLING_LINES),
                            " ".join(r.sample(words, 6)),
                        ]
                    )
                )
            lines.append(f"友情链接：{' | '.join(r.sample(GAMBLING_WORDS, 8))}")
            pages.append(Page("spam_gambling", self._url(site, "news", ".shtml"), "\n".join(lines), "zho"))

        for _ in range(CATEGORY_COUNTS["spam_injected"]):
            pool = CN_TOPICS[r.choice(["city", "economy"])]
            casino = r.choice(["澳门威尼斯人现金网", "葡京娱乐场官网", "太阳城娱乐注册", "皇冠体育投注网址"])
            sentences = [s.format(**self._slots()) for s in r.sample(pool["sentences"], 6)]
            lines = [f"{r.choice(pool['titles']).format(**self._slots())}_{casino}"]
            for s in sentences:
                if r.random() < 0.5:
                    s = f"{casino}：{s}"
                if r.random() < 0.4:
                    s = f"{s}{r.choice(NONSENSE)}，{r.choice(NONSENSE)}。"
                lines.append(s)
            lines.append(f"责任编辑：{casino}")
            host = f"{r.randint(100, 999)}.{r.randint(1000000, 9999999)}.example"
            pages.append(Page("spam_injected", self._url(host, "news"), "\n".join(lines), "zho"))

        for _ in range(CATEGORY_COUNTS["spam_adult"]):
            words = r.sample(ADULT_WORDS, 10)
            lines = [f"{words[0]}_{words[1]}_{words[2]}"]
            lines += [" ".join(r.sample(words, 5)) for _ in range(r.randint(5, 9))]
            lines.append(f"{words[3]}最新地址发布页，请收藏本站，永久免费")
            host = f"www.{r.choice(['av', 'fl', 'yy'])}{r.randint(100, 999)}.example"
            pages.append(Page("spam_adult", self._url(host, "vod", ".php"), "\n".join(lines), "zho"))
        return pages

    def _duplicates(self) -> list[Page]:
        r = self.rng
        pages = []
        mirrors = ["www.news-mirror.example", "repost.daily-digest.example", "m.formosa-times.example"]
        for original in r.sample(self.zh_tw, CATEGORY_COUNTS["near_duplicate"]):
            pages.append(
                Page(
                    "near_duplicate",
                    self._url(r.choice(mirrors), "repost"),
                    self._near_copy(original.text),
                    "zho",
                )
            )
        for original in r.sample(self.zh_tw, CATEGORY_COUNTS["exact_duplicate"]):
            pages.append(Page("exact_duplicate", self._url(r.choice(mirrors), "copy"), original.text, "zho"))
        return pages

    def _near_copy(self, text: str) -> str:
        """`text` with one clause rewritten and perhaps a repost note, within NEAR_DUP_RANGE of it."""
        r = self.rng
        original = _shingles(text)
        for _ in range(1000):
            lines = text.split("\n")
            i = r.choice([k for k in range(1, len(lines)) if "，" in lines[k]])
            clauses = lines[i].split("，")
            j = r.choice([k for k, c in enumerate(clauses[:-1]) if "。" not in c and "：" not in c] or [0])
            clauses[j] = r.choice(TW_CLAUSE_A)
            lines[i] = "，".join(clauses)
            if r.random() < 0.5:
                lines.append("（轉載）")
            copy = "\n".join(lines)
            if NEAR_DUP_RANGE[0] <= _jaccard(original, _shingles(copy)) <= NEAR_DUP_RANGE[1]:
                return copy
        raise RuntimeError("could not make a near-duplicate in range")

    def _mojibake(self) -> list[Page]:
        texts = ["\n".join([t, *p]) for t, p in (self.tw_article() for _ in range(4))]
        broken = [
            texts[0].encode("utf-8").decode("cp1252", errors="replace"),  # è‡ºåŒ—å¸‚ ...
            texts[1].encode("utf-8").decode("gbk", errors="replace"),  # 鑷哄寳甯 ...
            "".join("\ufffd" if i % 4 == 3 else c for i, c in enumerate(texts[2])),
            # every Han character lost to U+FFFD, then the UTF-8 bytes read as GBK: 锟斤拷锟斤拷 with the digits intact
            "".join("\ufffd" if "\u4e00" <= c <= "\u9fff" else c for c in texts[3])
            .encode("utf-8")
            .decode("gbk", errors="replace"),
        ]
        return [
            Page("mojibake", self._url("www.old-forum.example", "viewtopic", ".php"), t, "zho")
            for t in broken
        ]

    def _odd_pages(self) -> list[Page]:
        r = self.rng
        pages = []
        products = ["手機殼", "行動電源", "藍牙耳機", "保溫瓶", "帆布袋", "充電線"]
        product_lines = [
            f"【現貨】{p} 透明防摔 多色可選 NT${r.choice([99, 149, 199, 299])} 立即購買" for p in products
        ]
        repetitive = [
            "\n".join(["熱銷商品 | 限時特價", *(product_lines * 8)]),
            "\n".join(["最新公告", *["本店將於週一公休一天，造成不便敬請見諒。"] * 25]),
            "熱門關鍵字：" + " ".join(["臺北美食", "臺中景點", "高雄住宿", "花蓮旅遊", "墾丁民宿"] * 30),
        ]
        for text in repetitive:
            pages.append(Page("repetitive", self._url("shop.night-market.example", "list"), text, "zho"))

        quotes = [
            f"{code} {name} {price:.2f} {'+' if up else '-'}{chg:.2f} {'+' if up else '-'}{chg / price * 100:.2f}%"
            for code, name in [
                (1101, "水泥甲"),
                (2002, "鋼鐵乙"),
                (2303, "電子丙"),
                (2412, "電信丁"),
                (2603, "航運戊"),
                (2881, "金控己"),
                (3008, "光學庚"),
                (6505, "石化辛"),
            ]
            for price, chg, up in [(r.uniform(20, 900), r.uniform(0.1, 9), r.random() < 0.5)]
        ]
        code = (
            "import json\nfrom pathlib import Path\n\n\ndef load(path):\n    with open(path, encoding='utf-8') as f:\n"
            "        return [json.loads(line) for line in f]\n\n\nrows = load(Path('data.jsonl'))\nprint(len(rows))"
        )
        for text in [
            "今日行情\n代號 名稱 成交 漲跌 幅度\n" + "\n".join(quotes * 3),
            "Python 讀取 JSONL 範例\n" + code,
        ]:
            pages.append(Page("low_han", self._url("www.quote-board.example", "page"), text, "zho,eng"))

        for text in [
            "404 找不到網頁",
            "登入 | 註冊",
            "載入中…",
            "本頁面已移除",
            "Loading...",
            "請開啟 JavaScript 以瀏覽本網站",
            "首頁 > 商品",
            "感謝您的留言！",
            "此文章僅限會員閱讀",
        ]:
            lang = "eng" if text.isascii() else "zho"
            pages.append(Page("short", self._url("www.misc-site.example", "p"), text, lang))
        return pages


def _shingles(text: str, n: int = 5) -> set[str]:
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def _jaccard(a: set[str], b: set[str]) -> float:
    common = len(a & b)
    return common / (len(a) + len(b) - common) if a or b else 1.0


# --------------------------------------------------------------------------- writing


def _digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def _uuid(rng: random.Random) -> str:
    return f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>"


def _warc_date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_sample(path: str | Path = OUTPUT, seed: int = SEED) -> int:
    """Write the sample to `path`; returns the number of conversion records."""
    pages = SampleBuilder(seed).build()
    rng = random.Random(seed + 1)  # ids and dates, independent of the text generator
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)

    info = (
        b"software: zhtw corpus/sample/make_sample.py\r\n"
        b"isPartOf: zhtw-sample (Common Crawl WET-shaped)\r\n"
        b"description: Web pages written for the zhtw project to exercise its corpus stage: zh-TW, zh-CN and "
        b"English text, spam, boilerplate, duplicates, mojibake. Hosts are fictitious (.example).\r\n"
        b"format: WARC File Format 1.0\r\n"
        b"conformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/\r\n"
    )
    info_headers = [
        ("WARC-Type", "warcinfo"),
        ("WARC-Date", _warc_date(CRAWL_START)),
        ("WARC-Filename", "sample.warc.wet.gz"),
        ("WARC-Record-ID", _uuid(rng)),
        ("Content-Type", "application/warc-fields"),
        ("Content-Length", str(len(info))),
        ("WARC-Block-Digest", _digest(info)),
    ]
    writer.write_record(
        writer.create_warc_record(
            "",
            "warcinfo",
            payload=io.BytesIO(info),
            length=len(info),
            warc_headers=StatusAndHeaders("", info_headers, protocol="WARC/1.0"),
        )
    )

    when = CRAWL_START
    for page in pages:
        when += timedelta(seconds=rng.randint(1, 90))
        data = page.text.encode("utf-8")
        digest = _digest(data)
        headers = [
            ("WARC-Type", "conversion"),
            ("WARC-Target-URI", page.url),
            ("WARC-Date", _warc_date(when)),
            ("WARC-Record-ID", _uuid(rng)),
            ("WARC-Refers-To", _uuid(rng)),
            ("WARC-Block-Digest", digest),
            ("WARC-Identified-Content-Language", page.language),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(data))),
            ("WARC-Payload-Digest", digest),
        ]
        writer.write_record(
            writer.create_warc_record(
                page.url,
                "conversion",
                payload=io.BytesIO(data),
                length=len(data),
                warc_headers=StatusAndHeaders("", headers, protocol="WARC/1.0"),
            )
        )

    Path(path).write_bytes(buf.getvalue())
    return len(pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", default=str(OUTPUT), help=f"where to write (default: {OUTPUT})")
    args = parser.parse_args()
    n = write_sample(args.output)
    print(f"wrote {n} pages to {args.output} ({Path(args.output).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
